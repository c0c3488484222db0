"""Where an F1 training epoch's time goes: the epoch built up part by part (a profile).

    python -m benchmarks.step_profile                               # batch 256 and 6000
    python -m benchmarks.step_profile --batch-sizes 256 --epochs 1  # a smoke run

Each row is one epoch, floor(N / B) steps at batch B over N random uint8 images, in one
compiled `lax.scan` (the images gathered by a permutation inside it, as the package does),
the median of --epochs after a compiling one, each row in a fresh process:

- matmuls: x -> W1 -> ... -> W6, plain matmuls without biases, batch norm or ReLU (written in
  jax.numpy), the gradient of the sum of the outputs, an SGD update: the step's matmuls and
  nothing else of note;
- + ReLU; + batch norm (the batch's mean and variance, no scale or offset; benchmarks/
  objective_parts.py has the same chain for the full-batch value-and-gradient);
- package step, SGD: the package's own epoch (`train.runs_epoch_fn`) with plain SGD
  (method "sgd", momentum 0): biases, batch norm's scale, offset and running averages, the
  cross-entropy;
- package step, Adam: the package's epoch as it trains (the default method).

Beside them, from the same process that prints the table: the real bound (each matmul of a
step at the best rate any library reaches for it here) and JAX's own rates for the same
products (benchmarks/gemm_bound.py), times the steps of an epoch. The differences between
consecutive rows are what each part costs. Prints a markdown table and then one JSON record;
the measured table is in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import gemm_bound  # noqa: E402
from benchmarks.common import (  # noqa: E402
    epoch_runner,
    markdown_table,
    record,
    run_row_in_subprocess,
    spread,
    timed,
)
from benchmarks.objective_parts import ACTIVATIONS  # noqa: E402
from keskar_repro.training.models import INPUT_DIM, N_CLASSES  # noqa: E402
from keskar_repro.training.objective import scale_pixels  # noqa: E402
from keskar_repro.training.train import TrainConfig  # noqa: E402

# row -> the activation between the plain chain's matmuls, or the package's training method
ROWS = {
    "matmuls": ("none", None),
    "+ ReLU": ("relu", None),
    "+ batch norm": ("bn+relu", None),
    "package step, SGD": (None, "sgd"),
    "package step, Adam": (None, "adam"),
}


def plain_epoch(activation: str, x: jax.Array, batch: int):
    """A zero-argument call of one epoch of the plain chain (module docstring)."""
    act = ACTIVATIONS[activation]
    widths = [INPUT_DIM, *TrainConfig().hidden, N_CLASSES]
    keys = jax.random.split(jax.random.key(0), len(widths) - 1)
    weights = [jax.random.normal(k, (a, b)) / np.sqrt(a)
               for k, a, b in zip(keys, widths[:-1], widths[1:], strict=True)]  # fmt: skip
    steps = len(x) // batch
    order = jax.random.permutation(jax.random.key(1), len(x))[: steps * batch]

    def total(ws, xb):
        h = scale_pixels(xb)
        for w in ws[:-1]:
            h = act(h @ w)
        return jnp.sum(h @ ws[-1])

    @jax.jit
    def epoch(ws, x):
        def step(ws, idx):
            g = jax.grad(total)(ws, x[idx])
            return [w - 1e-6 * gw for w, gw in zip(ws, g, strict=True)], None

        return jax.lax.scan(step, ws, order.reshape(steps, batch))[0]

    return lambda: jax.block_until_ready(epoch(weights, x))


def measure(row: str, batch: int, n: int, epochs: int) -> dict:
    """{"row", "batch_size", "seconds", "min", "max"} of `row` in this process."""
    x = jax.device_put(np.random.default_rng(0).integers(0, 256, (n, 28, 28, 1), np.uint8))
    activation, method = ROWS[row]
    if method is None:
        call = plain_epoch(activation, x, batch)
    else:
        config = TrainConfig(batch_size=batch, method=method, momentum=0.0)
        y = jax.device_put(np.random.default_rng(1).integers(0, 10, n).astype(np.int32))
        run = epoch_runner(config, 1, x, y)

        def call():
            return jax.block_until_ready(run())

    return {"row": row, "batch_size": batch, **spread(timed(call, epochs)[1])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", default="256,6000", help="comma-separated")
    p.add_argument("--n", type=int, default=60000, help="images per epoch")
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per row (median)")
    p.add_argument("--row", default=None, help=argparse.SUPPRESS)  # one row, in a subprocess
    p.add_argument("--batch", type=int, default=256, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.row:
        print(json.dumps(measure(args.row, args.batch, args.n, args.epochs)))
        return 0

    results = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        options = ("--batch", str(batch), "--n", str(args.n), "--epochs", str(args.epochs))
        rows = [run_row_in_subprocess("benchmarks.step_profile", row, *options) for row in ROWS]
        steps = args.n // batch
        per_step = gemm_bound.measure(batch, 30)["step_bound_seconds"]
        bound = {k: steps * v for k, v in per_step.items()}
        results.append({"batch_size": batch, "rows": rows, "real_bound_seconds": bound["best"],
                        "jax_matmul_seconds": bound["jax"]})  # fmt: skip
        cells, previous = [], None
        for r in rows:
            added = "" if previous is None else f"{r['seconds'] - previous:+.2f}"
            cells.append((r["row"], f"{r['seconds']:.2f} ({r['min']:.2f}-{r['max']:.2f})", added,
                          f"{r['seconds'] / bound['best']:.2f}"))  # fmt: skip
            previous = r["seconds"]
        print(f"\nbatch {batch}: real bound {bound['best']:.2f} s, the same matmuls at JAX's "
              f"own rates {bound['jax']:.2f} s")  # fmt: skip
        print(markdown_table(("epoch", "seconds (min-max)", "added", "/ real bound"), cells))
    print(json.dumps(record("step_profile", argv, results=results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
