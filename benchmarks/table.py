"""The speed table: each hot path of the package as a ratio to this device's FLOP bound.

    python -m benchmarks.table                       # Fashion-MNIST if present, else random images
    python -m benchmarks.table --dataset random --quick # a smoke run (6,000 images, 1 repeat)
    python benchmarks/table.py --dataset random --quick # the same, run as a file

FLOP bound = the work's matmul FLOPs / the measured jitted float32 matmul rate
(benchmarks/common.py: `matmul_flops_per_second`); ratio = measured median seconds / FLOP bound
(1.0 is the limit). Per example, a training step or value-and-gradient costs
`models.train_step_flops_per_example` FLOPs and an evaluation `models.matmul_flops_per_example`.

Rows (N training and test images, by default 60,000 and 10,000, F1, BN policy "batch"):

- epoch B=256 / B=N/10: one compiled training epoch (floor(N/B) Adam steps), one seed;
- epoch x5 vmapped: 5 seeds in one vmapped program, also as a ratio to 5 one-seed epochs;
- objective: one value-and-grad of the full-split training objective
(keskar_repro.training.objective);
- sharpness: one full-space Metric 2.1 maximisation (10 iterations), per method, also as a
  ratio to nfev x the objective's time (1.0 = no cost outside the loss evaluations);
- paths: the 25-point parametric evaluation over train and test
  (keskar_repro.training.interpolation).

Each time is the median of --repeats calls after a compiling call; min-max is the spread. Peak
memory is the process's so far (device memory on a GPU, resident set on a CPU). The table is
printed last; the JSON goes to benchmarks/table_<platform>.json (or --out). The measured tables
are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    HERE,
    add_dataset_option,
    epoch_runner,
    load_images,
    markdown_table,
    matmul_flops_per_second,
    peak_memory_gb,
    record,
    spread,
    timed,
)
from keskar_repro.measures.sharpness import sharpness  # noqa: E402
from keskar_repro.training.interpolation import evaluate_path  # noqa: E402
from keskar_repro.training.models import matmul_flops_per_example, train_step_flops_per_example  # noqa: E402
from keskar_repro.training.objective import make_loss_fn  # noqa: E402
from keskar_repro.training.train import TrainConfig, initial_state  # noqa: E402


class Table:
    """The rows measured so far, each with its FLOP bound at the measured matmul rate."""

    def __init__(self, rate: float, repeats: int):
        self.rate, self.repeats, self.rows = rate, repeats, []

    def timed(self, fn) -> tuple[float, list[float]]:
        """`common.timed(fn, repeats)`: a compiling call, then `repeats` calls."""
        return timed(fn, self.repeats)

    def add(self, name: str, flops: float, timing: tuple[float, list[float]], **extra) -> dict:
        """Add the row of `timing` (`self.timed`'s) for work of `flops` FLOPs."""
        first, times = timing
        s = spread(times)
        row = {"row": name, **s, "compile_seconds": max(first - s["seconds"], 0.0)}
        row |= {"gflop": flops / 1e9, "flop_bound_seconds": flops / self.rate}
        row |= {"ratio": s["seconds"] / (flops / self.rate), "peak_memory_gb": peak_memory_gb()}
        self.rows.append(row | extra)
        print(json.dumps(self.rows[-1]), flush=True)
        return self.rows[-1]


def epoch_rows(table: Table, name: str, x, y) -> None:
    """One-seed and 5-seed epochs at B = 256 and B = N/10."""
    n_train = len(x)
    step = train_step_flops_per_example(TrainConfig().model())
    x_dev, y_dev = jax.device_put(x), jax.device_put(y)
    for batch in (256, round(0.1 * n_train)):
        config = TrainConfig(dataset=name, batch_size=batch)
        one = None
        for seeds in (1, 5):
            flops = seeds * (n_train // batch) * batch * step
            label = f"epoch B={batch}" + (f" x{seeds} vmapped" if seeds > 1 else "")
            timing = table.timed(epoch_runner(config, seeds, x_dev, y_dev))
            extra = {"batch_size": batch, "seeds": seeds}
            if one is not None:
                extra["vs_sequential"] = statistics.median(timing[1]) / (seeds * one["seconds"])
            row = table.add(label, flops, timing, **extra)
            one = one or row


def objective_rows(table: Table, x, y, xt, yt, methods: list[str]) -> None:
    """The objective's value-and-gradient, full-space sharpness per method, and the paths."""
    config = TrainConfig()
    model, state = config.model(), initial_state(config)
    n_train, step = len(x), train_step_flops_per_example(model)
    loss_fn = make_loss_fn(model, state.batch_stats, x, y)
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    timing = table.timed(lambda: value_and_grad(state.params))
    objective = table.add("objective value+grad", n_train * step, timing)

    for method in methods:
        results: list = []

        def call(method=method, results=results):
            results.append(sharpness(loss_fn, state.params, 1e-3, maxiter=10, method=method))
            return results[-1].value

        timing = table.timed(call)
        nfev = results[-1].nfev  # the work is known only after the calls
        vs_objective = statistics.median(timing[1]) / (nfev * objective["seconds"])
        label = f"sharpness full ({method})"
        table.add(label, nfev * n_train * step, timing, nfev=nfev, vs_nfev_objective=vs_objective)

    variables = {"params": state.params, "batch_stats": state.batch_stats}
    other = {"params": initial_state(TrainConfig(seed=1)).params, "batch_stats": state.batch_stats}
    alphas = np.linspace(-1, 2, 25)
    splits = {"train": (x, y), "test": (xt, yt)}
    flops = 25 * (n_train + len(xt)) * matmul_flops_per_example(model)
    timing = table.timed(lambda: evaluate_path(model, variables, other, alphas, splits))
    table.add("paths 25 alphas", flops, timing)


def print_table(rows: list[dict]) -> None:
    cells = []
    for r in rows:
        other = []
        if "vs_sequential" in r:
            other.append(f"{r['vs_sequential']:.2f}x of {r['seeds']} one-seed epochs")
        if "vs_nfev_objective" in r:
            other.append(f"nfev {r['nfev']}, {r['vs_nfev_objective']:.2f}x nfev x objective")
        cells.append(
            [
                r["row"],
                f"{r['seconds']:.3g} ({r['min']:.3g}-{r['max']:.3g})",
                f"{r['flop_bound_seconds']:.3g}",
                f"{r['ratio']:.2f}",
                f"{r['peak_memory_gb']:.2f}",
                "; ".join(other),
            ]
        )
    header = ("row", "seconds (min-max)", "FLOP bound s", "ratio", "peak memory GB", "other")
    print(markdown_table(header, cells))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataset_option(p)
    p.add_argument("--quick", action="store_true", help="6,000 images, 1 repeat: a smoke run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--methods", default="lbfgsb,lbfgsb-device", help="sharpness methods")
    p.add_argument("--out", default=None, help="default: benchmarks/table_<platform>.json")
    args = p.parse_args(argv)
    n_train, n_test = (6000, 1000) if args.quick else (60000, 10000)
    name, x, y, xt, yt = load_images(args.dataset, n_train, n_test)
    table = Table(matmul_flops_per_second(), 1 if args.quick else args.repeats)
    epoch_rows(table, name, x, y)
    objective_rows(table, x, y, xt, yt, args.methods.split(","))

    result = record(
        "table", argv, data=name, n_train=len(x), matmul_gflops=table.rate / 1e9, rows=table.rows
    )
    out = Path(args.out or HERE / f"table_{jax.default_backend()}.json")
    out.write_text(json.dumps(result, indent=1))
    print(f"\n{result['device']}, {name} ({len(x)} train), matmul {table.rate / 1e9:.0f} GFLOP/s;")
    print(f"wrote {out}")
    print_table(table.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
