"""Metric 2.1 with the chunk-wise gradient of the objective against the gradient through the scan.

    python -m benchmarks.gradient_change --dataset mnist10k --seed 1
    python benchmarks/gradient_change.py --epochs 1 --epsilons 1e-3 --runs-dir /tmp/runs  # smoke

The objective's gradient can be computed two ways that agree to float32 rounding:
`objective.make_loss_fn` accumulates it chunk by chunk (each chunk's backward pass right after
its forward pass: the package's way), and `jax.value_and_grad` of
`objective.split_metrics` differentiates the whole `lax.scan` over chunks. This measures what
the difference does to the full-space sharpness (SciPy L-BFGS-B, 10 iterations, BN policy
"batch") of the SB and LB runs of the paper's protocol (`--epochs`, default 100; the figure
scripts' runs, trained into --runs-dir if missing): one row per (run, eps) with both values,
their relative difference and nfev. Prints JSON lines; the result is in benchmarks/README.md
("Profile of the objective") and paper_notes.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

import jax  # noqa: E402

from benchmarks.common import paper_runs  # noqa: E402
from keskar_repro.data import load  # noqa: E402
from keskar_repro.devices.parallel import replicate  # noqa: E402
from keskar_repro.measures.sharpness import sharpness  # noqa: E402
from keskar_repro.training.objective import make_loss_fn, split_metrics  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist10k")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--epochs", type=int, default=100, help="of the runs (the protocol: 100)")
    p.add_argument("--epsilons", default="1e-3,5e-4")
    p.add_argument("--runs-dir", default=None, help="default: $KESKAR_REPRO_RUNS, else ./runs")
    args = p.parse_args(argv)
    data = load(args.dataset)
    x_dev, y_dev = replicate(data.x_train), replicate(data.y_train)
    for regime, run in paper_runs(data, [args.seed], epochs=args.epochs, root=args.runs_dir):
        model = run.config.model()

        def through_scan(params, model=model, run=run):
            return split_metrics(model, params, run.batch_stats, x_dev, y_dev)[0]

        losses = {
            "through_scan": jax.jit(through_scan),
            "chunk_wise": make_loss_fn(model, run.batch_stats, data.x_train, data.y_train),
        }
        for eps in (float(e) for e in args.epsilons.split(",")):
            results = {
                k: sharpness(f, run.params, eps, maxiter=10, method="lbfgsb")
                for k, f in losses.items()
            }
            old, new = results["through_scan"], results["chunk_wise"]
            row = {"regime": regime, "seed": args.seed, "epsilon": eps}
            row |= {"through_scan": old.value, "chunk_wise": new.value}
            row |= {"relative_difference": new.value / old.value - 1}
            row |= {"nfev_through_scan": old.nfev, "nfev_chunk_wise": new.nfev}
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
