"""What the benchmarks share: timing, peak memory, the FLOP bound, images, compiled epochs, rows.

- `timed`, `spread`: the seconds of a compiling call and of repeated calls, and their summary;
- `peak_memory_gb`: the process's peak memory so far (device memory on a GPU, resident set on
  a CPU); `run_row_in_subprocess`: one row in a fresh process, so that the peak is its own;
- `matmul_flops_per_second`: the hardware limit every ratio is measured against (the FLOP
  bound; the FLOPs of the work are `keskar_repro.training.models.matmul_flops_per_example` and
  `train_step_flops_per_example`); `device_description`;
- `load_images`: a dataset's images, or random ones where it is not on this host;
- `epoch_runner`: the next training epoch of seeded F1 runs, compiled from the package's own
  `keskar_repro.training.train.runs_epoch_fn` (the function the training loop compiles);
- `paper_runs`: the SB and LB runs of the paper's protocol, as the figure scripts train them;
- `record`, `markdown_table`: a benchmark's JSON record and printed table.

Measured numbers live in benchmarks/README.md.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from keskar_repro.store.files import environment
from keskar_repro.store.runs import get_or_train
from keskar_repro.training.protocol import sb_lb_configs, with_seeds
from keskar_repro.training.train import (
    TrainConfig,
    TrainedRun,
    runs_epoch_fn,
    seed_keys,
    stacked_initial_state,
)

HERE = Path(__file__).resolve().parent  # where the benchmarks write their JSON
REPO = HERE.parent


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """(seconds of a first, compiling call of `fn()`; seconds of `repeats` further calls), each
    call synchronised with `jax.block_until_ready`."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, times


def spread(times: Sequence[float]) -> dict[str, float]:
    """{"seconds": median, "min", "max"} of timed calls."""
    return {"seconds": statistics.median(times), "min": min(times), "max": max(times)}


def matmul_flops_per_second(n: int = 2048, repeats: int = 7) -> float:
    """Median float32 FLOP/s of a jitted n x n @ n x n product (2 n^3 FLOPs): the FLOP bound's
    rate. A ratio to the bound = measured seconds / (the work's FLOPs / this rate)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    return 2 * n**3 / statistics.median(timed(lambda: matmul(a, b), repeats)[1])


def device_description() -> str:
    device = jax.devices()[0]
    return f"{device.platform}:{device.device_kind} x{jax.device_count()}"


def peak_memory_gb() -> float:
    """The process's peak memory so far: device memory on a GPU/TPU (JAX's allocator), the peak
    resident set size on a CPU. Monotone: a row's value includes the work before it."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def run_row_in_subprocess(
    module: str, row: str | None, *args: str, env: dict | None = None
) -> dict:
    """Run `python -m <module> --row <row> <args>` (no --row for row None) in a fresh process
    (so that its peak memory is the row's alone, and XLA reads `env`'s XLA_FLAGS afresh), with
    `env` added to the environment, and return the JSON object it prints last."""
    command = [sys.executable, "-m", module, *(["--row", row] if row else []), *args]
    full_env = os.environ | (env or {})
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=full_env)
    if out.returncode:
        raise RuntimeError(f"{module} --row {row!r} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def add_dataset_option(parser) -> None:
    """--dataset (as the figure scripts spell it; --data, the older spelling, still works)."""
    parser.add_argument(
        "--dataset",
        "--data",
        dest="dataset",
        default="fashion_mnist",
        help="fashion_mnist, mnist or random (--data: the same)",
    )


def load_images(kind: str, n_train: int, n_test: int):
    """(name, x_train, y_train, x_test, y_test): the first n_train / n_test images of dataset
    `kind` (uint8, int32 labels), or random ones ("random", or when `kind` is not on this host:
    random images time the same)."""
    if kind != "random":
        try:
            from keskar_repro.data import load

            d = load(kind)
            return (
                d.name,
                d.x_train[:n_train],
                d.y_train[:n_train].astype(np.int32),
                d.x_test[:n_test],
                d.y_test[:n_test].astype(np.int32),
            )
        except Exception as err:  # whatever the reason: fall back, and say so
            print(f"notice: {kind} unavailable ({str(err).splitlines()[0]}); random images")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n_train + n_test, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n_train + n_test).astype(np.int32)
    return "random", x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def epoch_runner(config: TrainConfig, n_runs: int, x_dev, y_dev) -> Callable[[], tuple]:
    """A zero-argument call that trains `n_runs` runs of `config` (seeds 0 .. n_runs - 1) for
    their next epoch on (x_dev, y_dev) and returns `(state, (mean_losses, mean_accs))`, each
    with a leading run axis. The program is `train.runs_epoch_fn` jitted: the runs vmapped in
    one program, a lone run unbatched."""
    configs = with_seeds(config, range(n_runs))
    epochs = jax.jit(runs_epoch_fn(config, n_runs, int(x_dev.shape[0])))
    shuffle_keys = jnp.stack([seed_keys(c.seed)[1] for c in configs])
    state = stacked_initial_state(configs)
    epoch_index = itertools.count()

    def next_epoch():
        nonlocal state
        state, metrics = epochs(state, x_dev, y_dev, shuffle_keys, next(epoch_index))
        return state, metrics

    return next_epoch


def paper_runs(
    dataset, seeds: Sequence[int], *, epochs: int = 100, root: str | os.PathLike | None = None
) -> list[tuple[str, TrainedRun]]:
    """(regime, run) for the SB and then the LB run of each seed: the paper's protocol
    (`protocol.sb_lb_configs`, the configurations of the figure scripts, so the runs are shared
    with them) on `dataset` (a keskar_repro.data.Dataset), loaded from the runs folder `root`
    (default: `runs.default_runs_dir()`) or trained there."""
    configs, _ = sb_lb_configs(dataset.name, dataset.n_train, epochs=epochs)
    return [
        (regime, run)
        for regime, config in configs.items()
        for run in get_or_train(with_seeds(config, seeds), dataset, root=root)
    ]


def record(name: str, argv: Sequence[str] | None, **fields) -> dict:
    """A benchmark's JSON record: its command, `fields`, the device, the environment and the
    time."""
    args = sys.argv[1:] if argv is None else list(argv)
    return {
        "command": " ".join(["python -m benchmarks." + name, *args]),
        **fields,
        "device": device_description(),
        "jax": jax.__version__,
        "environment": environment(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table of `rows` (cells as given, str() of each) under `header`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
