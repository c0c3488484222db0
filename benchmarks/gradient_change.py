"""Metric 2.1 with the chunk-wise gradient of the objective against the gradient through the scan.

    python -m benchmarks.gradient_change --dataset mnist10k --seed 1

Issue 6 changed how `objective.make_loss_fn` differentiates the full-split loss (each chunk's
backward pass right after its forward pass, instead of one backward pass over the whole scan).
The two gradients agree to float32 rounding; this measures what that does to the full-space
sharpness (SciPy L-BFGS-B, 10 iterations, BN policy "batch") of the SB and LB runs of the main
experiment's paper preset (trained if missing): one row per (run, eps) with both values, their
relative difference and nfev. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keskar_repro.data import load  # noqa: E402
from keskar_repro.objective import make_loss_fn, replicate, split_metrics  # noqa: E402
from keskar_repro.runs import get_or_train  # noqa: E402
from keskar_repro.sharpness import sharpness  # noqa: E402
from keskar_repro.train import TrainConfig, paper_batch_sizes  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist10k")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--epsilons", default="1e-3,5e-4")
    p.add_argument("--runs-dir", default=None)
    args = p.parse_args(argv)
    data = load(args.dataset)
    x_dev, y_dev = replicate(data.x_train), replicate(data.y_train.astype(np.int32))
    sb, lb, _ = paper_batch_sizes(data.n_train)
    for regime, batch in (("SB", sb), ("LB", lb)):
        config = TrainConfig(dataset=data.name, batch_size=batch, epochs=100)
        (run,) = get_or_train(config, data, [args.seed], root=args.runs_dir)
        model = run.config.model()

        def through_scan(params, model=model, run=run):
            return split_metrics(model, params, run.batch_stats, x_dev, y_dev)[0]

        losses = {
            "through_scan": jax.jit(through_scan),
            "chunk_wise": make_loss_fn(model, run.batch_stats, data.x_train, data.y_train),
        }
        for eps in (float(e) for e in args.epsilons.split(",")):
            results = {k: sharpness(f, run.params, eps, maxiter=10) for k, f in losses.items()}
            old, new = results["through_scan"], results["chunk_wise"]
            row = {"regime": regime, "seed": args.seed, "epsilon": eps}
            row |= {"through_scan": old.value, "chunk_wise": new.value}
            row |= {"relative_difference": new.value / old.value - 1}
            row |= {"nfev_through_scan": old.nfev, "nfev_chunk_wise": new.nfev}
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
