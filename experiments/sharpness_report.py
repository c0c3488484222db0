"""Sharpness of one SB and one LB F1 minimizer under every batch-norm policy and solver variant.

    python experiments/sharpness_report.py --dataset mnist10k
    python experiments/sharpness_report.py --dataset fashion_mnist --policies batch,running

For the seed-`--seed` SB and LB runs of the paper preset (trained by, and shared with,
experiments/fig_sharpness.py; trained here if missing), measures Metric 2.1 at eps 1e-3 and 5e-4,
in the full space and in 100-d random subspaces, for each BN policy (batch, full, running), plus
the paper-literal L-BFGS-B scaling and the PGA cross-check (full space, batch policy). Prints a
table with phi, f0, f_max, nit, nfev and seconds, and writes it as JSON and Markdown into --out
(sharpness_report_<dataset>.{json,md}). Every measurement is cached beside its run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=["mnist", "mnist10k", "fashion_mnist"], required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--hidden", default="512,512,512,512,512", help="hidden widths (F1)")
    p.add_argument("--policies", default="batch,full,running")
    p.add_argument("--epsilons", default="1e-3,5e-4")
    p.add_argument("--subspace-dim", type=int, default=100)
    p.add_argument("--subspace-scaling", default="unit,gaussian")
    p.add_argument("--no-variants", action="store_true", help="skip the literal and PGA runs")
    p.add_argument("--out", default=str(REPO / "figures"))
    p.add_argument("--runs-dir", default=None)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from tqdm.auto import tqdm

    from keskar_repro.data import load
    from keskar_repro.measurements import RunSharpness
    from keskar_repro.runs import environment, get_or_train, write_atomic
    from keskar_repro.train import TrainConfig, paper_batch_sizes

    t0 = time.time()
    dataset = load(args.dataset, data_dir=args.data_dir)
    sb, lb, note = paper_batch_sizes(dataset.n_train)
    epsilons = [float(e) for e in args.epsilons.split(",")]
    policies = args.policies.split(",")
    spaces = [(None, None)] + [(args.subspace_dim, s) for s in args.subspace_scaling.split(",")]
    jobs = [
        {"epsilon": e, "subspace_dim": p, "subspace_scaling": s, "bn_policy": pol}
        for pol in policies
        for p, s in spaces
        for e in epsilons
    ]
    if not args.no_variants:
        jobs += [{"epsilon": e, "scaling": "literal"} for e in epsilons]
        jobs += [{"epsilon": e, "method": "pga"} for e in epsilons]

    rows = []
    bar = tqdm(total=2 * len(jobs), desc="sharpness", unit="max")
    for regime, batch in (("SB", sb), ("LB", lb)):
        config = TrainConfig(
            dataset=dataset.name,
            batch_size=batch,
            epochs=args.epochs,
            hidden=tuple(int(w) for w in args.hidden.split(",")),
        )
        (run,) = get_or_train(config, dataset, [args.seed], root=args.runs_dir)
        meter = RunSharpness(run, dataset, args.runs_dir)
        for job in jobs:
            result = meter.measure(**job)
            rows.append({"regime": regime, "batch_size": batch, **result})
            bar.update(1)
    bar.close()

    columns = "regime, BN policy, space, eps, scaling, method, phi (%), f0, f_max, nit, nfev, s"
    header = "| " + " | ".join(columns.split(", ")) + " |"
    lines = [header, "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {r['regime']} | {r['bn_policy']} | {r['space']} | {r['epsilon']:g} | "
            f"{r['scaling']} | {r['method']} | {r['value']:.4g} | {r['f0']:.3g} | "
            f"{r['f_max']:.3g} | {r['nit']} | {r['nfev']} | {r['seconds']:.1f} |"
        )
    table = "\n".join(lines)
    command = "python experiments/sharpness_report.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    report = {
        "command": command,
        "dataset": dataset.provenance,
        "seed": args.seed,
        "batch_note": note,
        "rows": rows,
        "environment": environment(),
        "wall_seconds": time.time() - t0,
    }
    stem = Path(args.out) / f"sharpness_report_{dataset.name}"
    write_atomic(f"{stem}.json", json.dumps(report, indent=1))
    write_atomic(
        f"{stem}.md",
        f"Sharpness of the seed-{args.seed} SB and LB F1 minimizers on {dataset.name} "
        f"({note}).\n\nCommand: `{command}`; device: {report['environment']['device']}; "
        f"wall time {report['wall_seconds']:.0f} s.\n\n{table}\n",
    )
    print(table)
    print(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        sys.exit(f"error: {err}")
