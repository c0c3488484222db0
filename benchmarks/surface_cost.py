"""The cost of a 2-D loss surface against the FLOP bound of its forward passes.

    python -m benchmarks.surface_cost                        # F1, mnist10k, a 7 x 7 grid
    python -m benchmarks.surface_cost --grid 3 --repeats 1   # a smoke run

F1 at its initial point (`models.init_variables`, key 0), the training and test splits of
--dataset (8,000 and 2,000 images on mnist10k), BN policy "batch": `landscape.surface` of
`objective.data_metrics_fn` (train and test loss and accuracy) on a --grid x --grid grid in
two filter-normalised directions, exactly as experiments/fig_surface.py evaluates it, one
compiled call per row. Each point is one forward pass over both splits, 2 F (N_train + N_test)
matmul FLOPs (F: the forward multiply-adds per example, `models.matmul_flops_per_example`);
the ratio is the measured seconds over those FLOPs at the measured matmul rate
(`common.matmul_flops_per_second`), the median of --repeats surfaces after a first,
compiling, one. Prints a markdown table, then one JSON record (`common.record`); the measured
numbers are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    load_images,
    markdown_table,
    matmul_flops_per_second,
    record,
)
from keskar_repro.measures.landscape import filter_normalized_direction, surface  # noqa: E402
from keskar_repro.training.models import f1, init_variables, matmul_flops_per_example  # noqa: E402
from keskar_repro.training.objective import data_metrics_fn, metrics_data  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist10k")
    p.add_argument("--grid", type=int, default=7, help="points per axis")
    p.add_argument("--repeats", type=int, default=3, help="timed surfaces (median)")
    args = p.parse_args(argv)
    name, x, y, xt, yt = load_images(args.dataset, 8000, 2000)
    model = f1()
    variables = init_variables(model, jax.random.key(0))
    params = variables["params"]
    fn = data_metrics_fn(model, bn_policy="batch")
    data = metrics_data(variables["batch_stats"], {"train": (x, y), "test": (xt, yt)})
    d1, d2 = (filter_normalized_direction(jax.random.key(i), params) for i in (1, 2))
    axis = np.linspace(-1.0, 1.0, args.grid)

    def one() -> float:
        t0 = time.perf_counter()
        surface(fn, params, d1, d2, axis, axis, data=data)
        return time.perf_counter() - t0

    first = one()
    times = [one() for _ in range(args.repeats)]
    seconds = statistics.median(times)
    points = args.grid**2
    flops = points * matmul_flops_per_example(model) * (len(y) + len(yt))
    rate = matmul_flops_per_second()
    ratio = seconds / (flops / rate)
    print(markdown_table(
        ["grid", "points", "images per point", "first call s", "median s", "s per point",
         "GFLOP/s bound", "ratio to the FLOP bound"],
        [[f"{args.grid} x {args.grid}", points, len(y) + len(yt), f"{first:.2f}",
          f"{seconds:.2f} ({min(times):.2f}-{max(times):.2f})", f"{seconds / points:.3f}",
          f"{rate / 1e9:.0f}", f"{ratio:.2f}"]],
    ))  # fmt: skip
    out = record("surface_cost", argv, dataset=name, grid=args.grid, first_seconds=first,
                 seconds=times, flops=flops, matmul_flops_per_second=rate,
                 ratio_to_bound=ratio)  # fmt: skip
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
