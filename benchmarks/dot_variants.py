"""The layout and precision of F1's slowest product in XLA: two more levers, measured.

    python -m benchmarks.dot_variants                     # batch 256, 30 calls per variant
    python -m benchmarks.dot_variants --batch-size 6000 --repeats 5

The weight gradient x^T dy of a hidden layer, (512, B) @ (B, 512) with x stored as (B, 512),
is XLA's slowest large product at batch 256 (benchmarks/gemm_bound.py). Timed the way
gemm_bound times JAX (eight products per compiled `lax.scan`, the median of --repeats calls):

- layout: x^T dy as written; (dy^T x)^T (the other operand transposed, the result transposed
  back); x stored transposed, (512, B) contiguous, so that the product needs no transpose;
- precision: `jax.default_matmul_precision` "default", "highest" and "bfloat16" around the
  same product (XLA:CPU may ignore it for float32).

Prints a markdown table of GFLOP/s, then one JSON record.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import markdown_table, record  # noqa: E402
from benchmarks.gemm_bound import operands, time_jax  # noqa: E402

WIDTH = 512


def variants(batch: int, repeats: int) -> dict[str, float]:
    """{variant: seconds per product} of the hidden weight gradient at `batch`."""
    x, dy = operands(WIDTH, batch, WIDTH, "a")  # x: (batch, 512), dy: (batch, 512)
    out = {
        "x^T dy (as written)": time_jax(x, dy, "a", repeats),
        "(dy^T x)^T": time_jax(x, dy, "a", repeats, lambda u, v: (v.T @ u).T),
        "x stored transposed": time_jax(np.ascontiguousarray(x.T), dy, "", repeats),
    }
    for precision in ("default", "highest", "bfloat16"):
        with jax.default_matmul_precision(precision):
            out[f"precision {precision}"] = time_jax(x, dy, "a", repeats)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per variant")
    args = parser.parse_args(argv)
    seconds = variants(args.batch_size, args.repeats)
    flops = 2 * WIDTH * args.batch_size * WIDTH
    rows = [(name, f"{flops / s / 1e9:.0f}") for name, s in seconds.items()]
    print(markdown_table(["(512, B) @ (B, 512), weight gradient", "GFLOP/s"], rows))
    print(json.dumps(record("dot_variants", argv, batch_size=args.batch_size, seconds=seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
