"""Peak memory of the objective, the sharpness maximisations and the path evaluation.

    python -m benchmarks.peak_memory                 # Fashion-MNIST, 60,000 / 10,000 images
    python benchmarks/peak_memory.py --dataset random --n 5000 --rows baseline,objective  # smoke

Each row runs in a fresh process, so its peak is its own: the peak resident set on a CPU (the
Python process with JAX, the dataset and everything else), the allocator's peak device memory
on a GPU/TPU. "baseline" is that process after loading the data and one F1 initialisation,
before any of the work. "program GB" is XLA's account of the row's compiled program (arguments,
outputs and temporaries; keskar_repro.devices.memory.program_bytes) where the row is one program.

Rows (F1 at its initialisation, BN policy "batch", chunks of 5000):
- objective: one value-and-gradient of the training objective (make_loss_fn);
- sharpness full / subspace: Metric 2.1 at eps 1e-3, 10 L-BFGS-B iterations (SciPy), in the
  full space and in a 100-d random subspace (A is n x 100 float32);
- paths: the 25-point linear path over train and test (alpha batch chosen by evaluate_path).
Prints a markdown table; the JSON goes to benchmarks/peak_memory_<platform>.json (or --out).
The measured table is in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    HERE,
    add_dataset_option,
    load_images,
    markdown_table,
    peak_memory_gb,
    record,
    run_row_in_subprocess,
)
from keskar_repro.devices.memory import program_bytes  # noqa: E402
from keskar_repro.measures.sharpness import sharpness  # noqa: E402
from keskar_repro.training.interpolation import evaluate_path  # noqa: E402
from keskar_repro.training.objective import make_loss_fn  # noqa: E402
from keskar_repro.training.train import TrainConfig, initial_state  # noqa: E402

ROWS = ("baseline", "objective", "sharpness full", "sharpness subspace 100-d", "paths 25 alphas")


def measure(row: str, data: str, n_train: int) -> dict:
    """Run `row` once in this process; {"row", "peak_memory_gb", "program_gb", "seconds"}."""
    _, x, y, xt, yt = load_images(data, n_train, n_train // 6)
    config = TrainConfig()
    model = config.model()
    state = initial_state(config)
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
        other = {"params": initial_state(TrainConfig(seed=1)).params}
        other["batch_stats"] = state.batch_stats
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
    add_dataset_option(p)
    p.add_argument("--n", type=int, default=60000, help="training images (test: n / 6)")
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated, of: " + ", ".join(ROWS))
    p.add_argument("--out", default=None, help="default: benchmarks/peak_memory_<platform>.json")
    p.add_argument("--row", default=None, help=argparse.SUPPRESS)  # one row, in a subprocess
    args = p.parse_args(argv)
    if args.row:
        print(json.dumps(measure(args.row, args.dataset, args.n)))
        return 0
    rows = []
    for row in args.rows.split(","):
        options = ("--dataset", args.dataset, "--n", str(args.n))
        rows.append(run_row_in_subprocess("benchmarks.peak_memory", row, *options))
        print(json.dumps(rows[-1]), flush=True)
    result = record("peak_memory", argv, data=args.dataset, n_train=args.n, rows=rows)
    out = Path(args.out or HERE / f"peak_memory_{jax.default_backend()}.json")
    out.write_text(json.dumps(result, indent=1))
    print(f"\n{result['device']}, {args.dataset}; wrote {out}")
    base = rows[0]["peak_memory_gb"]
    cells = [
        (
            r["row"],
            f"{r['peak_memory_gb']:.2f}",
            f"{r['peak_memory_gb'] - base:.2f}",
            "" if r["program_gb"] is None else f"{r['program_gb']:.2f}",
            f"{r['seconds']:.1f}",
        )
        for r in rows
    ]
    header = ("row", "peak memory GB", f"above {rows[0]['row']} GB", "program GB", "seconds")
    print(markdown_table(header, cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
