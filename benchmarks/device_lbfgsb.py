"""SciPy's L-BFGS-B (host) vs jaxopt's L-BFGS-B on the device: Metric 2.1 on F1 minimizers.

    python -m benchmarks.device_lbfgsb --dataset mnist10k --seeds 0,1

For the SB and LB runs of the paper preset (experiments/fig_sharpness.py's runs, trained if
missing), measures the full-space sharpness at each epsilon with method="lbfgsb" (SciPy, 10
iterations, float64 on the host) and method="lbfgsb-device" (jaxopt, 10 iterations, float32 on
the device), both with the box-normalised scaling and BN policy "batch"; each measurement is
cached beside its run. Prints one row per (run, eps): both values, their ratio, nfev and
seconds, and writes benchmarks/device_lbfgsb_<dataset>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist10k")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epsilons", default="1e-3,5e-4")
    p.add_argument("--runs-dir", default=None)
    args = p.parse_args(argv)

    from keskar_repro.data import load
    from keskar_repro.measurements import RunSharpness
    from keskar_repro.runs import environment, get_or_train
    from keskar_repro.train import TrainConfig, paper_batch_sizes

    dataset = load(args.dataset)
    sb, lb, _ = paper_batch_sizes(dataset.n_train)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for regime, batch in (("SB", sb), ("LB", lb)):
        config = TrainConfig(dataset=dataset.name, batch_size=batch, epochs=100)
        for run in get_or_train(config, dataset, seeds, root=args.runs_dir):
            meter = RunSharpness(run, dataset, args.runs_dir)
            for eps in (float(e) for e in args.epsilons.split(",")):
                host, device = (meter.measure(eps, method=m) for m in ("lbfgsb", "lbfgsb-device"))
                rows.append(
                    {
                        "regime": regime,
                        "seed": run.config.seed,
                        "epsilon": eps,
                        "scipy": host["value"],
                        "device": device["value"],
                        "ratio": device["value"] / host["value"] if host["value"] else None,
                        "scipy_nfev": host["nfev"],
                        "device_nfev": device["nfev"],
                        "scipy_seconds": host["seconds"],
                        "device_seconds": device["seconds"],
                    }
                )
                r = rows[-1]
                print(
                    f"{regime} seed {r['seed']} eps {eps:g}: SciPy {r['scipy']:.4g} "
                    f"({r['scipy_nfev']} evals, {r['scipy_seconds']:.1f} s)  device "
                    f"{r['device']:.4g} ({r['device_nfev']} evals, {r['device_seconds']:.1f} s)  "
                    f"ratio {r['ratio']:.3f}",
                    flush=True,
                )
    out = HERE / f"device_lbfgsb_{dataset.name}.json"
    out.write_text(
        json.dumps(
            {
                "command": "python -m benchmarks.device_lbfgsb " + " ".join(argv or sys.argv[1:]),
                "rows": rows,
                "environment": environment(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            indent=1,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
