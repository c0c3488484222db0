"""SciPy's L-BFGS-B (host) vs jaxopt's L-BFGS-B on the device: Metric 2.1 on F1 minimizers.

    python -m benchmarks.device_lbfgsb --dataset mnist10k --seeds 0,1
    python benchmarks/device_lbfgsb.py --seeds 0 --epochs 1 --epsilons 1e-3 \\
        --runs-dir /tmp/runs --out /tmp/device_lbfgsb.json                  # a smoke run

For the SB and LB runs of the paper's protocol (`--epochs`, default 100: the figure scripts'
runs, trained into --runs-dir if missing), measures the full-space sharpness at each epsilon
with method="lbfgsb" (SciPy, 10 iterations, float64 on the host) and method="lbfgsb-device"
(jaxopt, 10 iterations, float32 on the device), both with the box-normalised scaling and BN
policy "batch"; each measurement is cached beside its run. Prints one row per (run, eps): both
values, their ratio, nfev and seconds, and writes benchmarks/device_lbfgsb_<dataset>.json (or
--out). The measured table is in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

from benchmarks.common import HERE, paper_runs, record  # noqa: E402
from keskar_repro.data import load  # noqa: E402
from keskar_repro.store.measurements import RunSharpness  # noqa: E402


def compare(meter: RunSharpness, regime: str, eps: float) -> dict:
    """Both solvers' measurement of one run at `eps` (cached beside the run), as one row."""
    host, device = (meter.measure(eps, method=m) for m in ("lbfgsb", "lbfgsb-device"))
    row = {
        "regime": regime,
        "seed": meter.run.config.seed,
        "epsilon": eps,
        "scipy": host["value"],
        "device": device["value"],
        "ratio": device["value"] / host["value"] if host["value"] else None,
        "scipy_nfev": host["nfev"],
        "device_nfev": device["nfev"],
        "scipy_seconds": host["seconds"],
        "device_seconds": device["seconds"],
    }
    ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
    print(
        f"{regime} seed {row['seed']} eps {eps:g}: SciPy {row['scipy']:.4g} "
        f"({row['scipy_nfev']} evals, {row['scipy_seconds']:.1f} s)  device "
        f"{row['device']:.4g} ({row['device_nfev']} evals, {row['device_seconds']:.1f} s)  "
        f"ratio {ratio}",
        flush=True,
    )
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist10k")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epochs", type=int, default=100, help="of the runs (the protocol: 100)")
    p.add_argument("--epsilons", default="1e-3,5e-4")
    p.add_argument("--runs-dir", default=None, help="default: $KESKAR_REPRO_RUNS, else ./runs")
    p.add_argument("--out", default=None, help="default: benchmarks/device_lbfgsb_<dataset>.json")
    args = p.parse_args(argv)

    dataset = load(args.dataset)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for regime, run in paper_runs(dataset, seeds, epochs=args.epochs, root=args.runs_dir):
        meter = RunSharpness(run, dataset, args.runs_dir)
        rows += [compare(meter, regime, float(e)) for e in args.epsilons.split(",")]
    out = Path(args.out or HERE / f"device_lbfgsb_{dataset.name}.json")
    out.write_text(json.dumps(record("device_lbfgsb", argv, rows=rows), indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
