"""Seconds of the 25-point path evaluation for several numbers of alphas evaluated together.

    python -m benchmarks.path_alpha_batch --dataset mnist10k

`evaluate_path(alpha_batch=k)` vmaps k alphas per step of its `lax.map`; the values do not
depend on k. This times k = 1, 5 and 25 (F1 at two initialisations, train and test splits,
median of --repeats after a compiling call) to choose the default on this device: 1 on a CPU,
where vmapping measured slower. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.hardware import device_description, time_call  # noqa: E402
from keskar_repro.data import load  # noqa: E402
from keskar_repro.interpolation import evaluate_path  # noqa: E402
from keskar_repro.train import TrainConfig, init_state  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist10k")
    p.add_argument("--batches", default="1,5,25", help="alpha batch sizes to time")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    data = load(args.dataset)
    config = TrainConfig()
    a, b = init_state(config), init_state(TrainConfig(seed=1))
    start = {"params": a.params, "batch_stats": a.batch_stats}
    end = {"params": b.params, "batch_stats": a.batch_stats}
    splits = {"train": (data.x_train, data.y_train), "test": (data.x_test, data.y_test)}
    alphas = np.linspace(-1, 2, 25)
    for batch in (int(k) for k in args.batches.split(",")):

        def evaluate(batch=batch):
            return evaluate_path(config.model(), start, end, alphas, splits, alpha_batch=batch)

        times = time_call(evaluate, repeats=args.repeats)
        row = {"device": device_description(), "dataset": data.name, "alpha_batch": batch}
        row |= {"seconds": statistics.median(times), "min": min(times), "max": max(times)}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
