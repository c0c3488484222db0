"""Seconds of the 25-point path evaluation for several numbers of alphas evaluated together.

    python -m benchmarks.path_alpha_batch --dataset mnist10k
    python benchmarks/path_alpha_batch.py --dataset mnist10k --batches 1,5 --repeats 1

`evaluate_path(alpha_batch=k)` vmaps k alphas per step of its `lax.map`; the values do not
depend on k. This times k = 1, 5 and 25 by default (F1 at two initialisations, train and test
splits, median of --repeats after a compiling call): the measurement behind evaluate_path's
default on a CPU (benchmarks/README.md, "Peak memory"). Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

import numpy as np  # noqa: E402

from benchmarks.common import device_description, spread, timed  # noqa: E402
from keskar_repro.data import load  # noqa: E402
from keskar_repro.training.interpolation import evaluate_path  # noqa: E402
from keskar_repro.training.train import TrainConfig, initial_state  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist10k")
    p.add_argument("--batches", default="1,5,25", help="alpha batch sizes to time")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    data = load(args.dataset)
    config = TrainConfig()
    a, b = initial_state(config), initial_state(TrainConfig(seed=1))
    start = {"params": a.params, "batch_stats": a.batch_stats}
    end = {"params": b.params, "batch_stats": a.batch_stats}
    splits = {"train": (data.x_train, data.y_train), "test": (data.x_test, data.y_test)}
    alphas = np.linspace(-1, 2, 25)
    for batch in (int(k) for k in args.batches.split(",")):

        def evaluate(batch=batch):
            return evaluate_path(config.model(), start, end, alphas, splits, alpha_batch=batch)

        times = timed(evaluate, args.repeats)[1]
        row = {"device": device_description(), "dataset": data.name, "alpha_batch": batch}
        print(json.dumps(row | spread(times)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
