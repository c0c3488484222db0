"""Peak memory of the objective, the sharpness maximisations and the path evaluation (issue 6).

    python -m benchmarks.peak_memory                 # Fashion-MNIST, 60,000 / 10,000 images

Each row runs in a fresh process, so its peak is its own: the peak resident set on a CPU (the
Python process with JAX, the dataset and everything else), the allocator's peak device memory
on a GPU/TPU. "baseline" is that process after loading the data and one F1 initialisation,
before any of the work. "program GB" is XLA's account of the row's compiled program (arguments,
outputs and temporaries; keskar_repro.memory.program_bytes) where the row is one program.

Rows (F1 at its initialisation, BN policy "batch", chunks of 5000):
- objective: one value-and-gradient of the training objective (make_loss_fn);
- sharpness full / subspace: Metric 2.1 at eps 1e-3, 10 L-BFGS-B iterations (SciPy), in the
  full space and in a 100-d random subspace (A is n x 100 float32: 0.59 GB for F1);
- paths: the 25-point linear path over train and test (alpha batch chosen by evaluate_path).
Prints a markdown table; the JSON goes to benchmarks/peak_memory_<platform>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.hardware import device_description, run_row_in_subprocess  # noqa: E402
from benchmarks.table import load_images, peak_memory_gb  # noqa: E402
from keskar_repro.interpolation import evaluate_path  # noqa: E402
from keskar_repro.memory import program_bytes  # noqa: E402
from keskar_repro.objective import make_loss_fn  # noqa: E402
from keskar_repro.sharpness import sharpness  # noqa: E402
from keskar_repro.train import TrainConfig, init_state  # noqa: E402

ROWS = ("baseline", "objective", "sharpness full", "sharpness subspace 100-d", "paths 25 alphas")


def measure(row: str, data: str) -> dict:
    """Run `row` once in this process; {"row", "peak_memory_gb", "program_gb", "seconds"}."""
    _, x, y, xt, yt = load_images(data, 60000, 10000)
    config = TrainConfig()
    model = config.model()
    state = init_state(config)
    loss_fn = make_loss_fn(model, state.batch_stats, x, y)
    program_gb = None
    t0 = time.perf_counter()
    if row == "objective":
        value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
        compiled = value_and_grad.lower(state.params).compile()
        program_gb = program_bytes(compiled) / 1e9
        jax.block_until_ready(compiled(state.params))
    elif row.startswith("sharpness"):
        subspace = {"subspace_dim": 100, "key": jax.random.key(0)} if "subspace" in row else {}
        sharpness(loss_fn, state.params, 1e-3, maxiter=10, **subspace)
    elif row == "paths 25 alphas":
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        other = {"params": init_state(TrainConfig(seed=1)).params, "batch_stats": state.batch_stats}
        splits = {"train": (x, y), "test": (xt, yt)}
        evaluate_path(model, variables, other, np.linspace(-1, 2, 25), splits)
    elif row != "baseline":
        raise ValueError(f"row={row!r} is not one of {ROWS}")
    return {
        "row": row,
        "peak_memory_gb": peak_memory_gb(),
        "program_gb": program_gb,
        "seconds": time.perf_counter() - t0,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="fashion_mnist", help="fashion_mnist, mnist or random")
    p.add_argument("--row", default=None, help=argparse.SUPPRESS)  # one row, in a subprocess
    args = p.parse_args(argv)
    if args.row:
        print(json.dumps(measure(args.row, args.data)))
        return 0
    rows = []
    for row in ROWS:
        rows.append(run_row_in_subprocess("benchmarks.peak_memory", row, "--data", args.data))
        print(json.dumps(rows[-1]), flush=True)
    device = device_description()
    out = HERE / f"peak_memory_{jax.default_backend()}.json"
    result = {
        "command": "python -m benchmarks.peak_memory " + " ".join(argv or sys.argv[1:]),
        "device": device,
        "data": args.data,
        "rows": rows,
        "jax": jax.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out.write_text(json.dumps(result, indent=1))
    print(f"\n{device}, {args.data}; wrote {out}")
    print("| row | peak memory GB | above baseline GB | program GB | seconds |")
    print("|---|---|---|---|---|")
    base = rows[0]["peak_memory_gb"]
    for r in rows:
        program = "" if r["program_gb"] is None else f"{r['program_gb']:.2f}"
        print(
            f"| {r['row']} | {r['peak_memory_gb']:.2f} | {r['peak_memory_gb'] - base:.2f} | "
            f"{program} | {r['seconds']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
