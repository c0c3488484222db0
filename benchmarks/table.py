"""The speed table: each hot path of the package as a ratio to this device's FLOP bound.

    python -m benchmarks.table                       # Fashion-MNIST if present, else random images
    python -m benchmarks.table --data random --quick # a smoke run (6,000 images, 1 repeat)

FLOP bound = the work's matmul FLOPs / the measured jitted float32 matmul rate (2048^2, median
of 7; benchmarks/hardware.py); ratio = measured median seconds / FLOP bound (1.0 is the limit).
With F = 2 sum_l d_{l-1} d_l the forward FLOPs of one example (F1: 2.91 MFLOP), per example:

    training step, value-and-grad:  3F - 2 * 784 * 512   (no input gradient for layer 1)
    evaluation (forward only):      F

Rows (N = 60,000 training and 10,000 test images, F1, BN policy "batch"):

- epoch SB / LB: one compiled training epoch (floor(N/B) Adam steps), one seed;
- epoch x5 vmapped: 5 seeds in one vmapped program, also as a ratio to 5 one-seed epochs;
- objective: one value-and-grad of the full-split training objective (keskar_repro.objective);
- sharpness: one full-space Metric 2.1 maximisation (10 iterations), per method, also as a
  ratio to nfev x the objective's time (1.0 = no cost outside the loss evaluations);
- paths: the 25-point parametric evaluation over train and test (keskar_repro.interpolation).

Each time is the median of --repeats calls after a compiling call; min-max is the spread. Peak
memory is the process's so far (device memory on a GPU, resident set on a CPU). The table is
printed last; the JSON goes to benchmarks/table_<platform>.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.hardware import device_description, matmul_flops_per_second  # noqa: E402
from keskar_repro.interpolation import evaluate_path  # noqa: E402
from keskar_repro.models import INPUT_DIM, matmul_flops_per_example  # noqa: E402
from keskar_repro.objective import make_loss_fn  # noqa: E402
from keskar_repro.sharpness import sharpness  # noqa: E402
from keskar_repro.train import TrainConfig, init_state, make_epoch_fn, seed_keys  # noqa: E402


def peak_memory_gb() -> float:
    """The process's peak memory so far: device memory on a GPU/TPU (JAX's allocator), the peak
    resident set size on a CPU. Monotone: a row's value includes the rows before it."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 1e9
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    """(seconds of the first, compiling call; seconds of `repeats` further calls)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, times


def load_images(kind: str, n_train: int, n_test: int):
    if kind != "random":
        try:
            from keskar_repro.data import load

            d = load(kind)
            return (
                d.name,
                d.x_train[:n_train],
                d.y_train[:n_train],
                d.x_test[:n_test],
                d.y_test[:n_test],
            )
        except Exception as err:  # no dataset on this host: random images time the same
            print(f"notice: {kind} unavailable ({str(err).splitlines()[0]}); random images")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n_train + n_test, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n_train + n_test).astype(np.int32)
    return "random", x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def epoch_runner(name: str, batch: int, seeds: int, x_dev, y_dev):
    """A zero-argument call that runs the next training epoch of `seeds` F1 runs (vmapped if
    more than one) at batch `batch`."""
    config = TrainConfig(dataset=name, batch_size=batch)
    epoch_fn = make_epoch_fn(config, x_dev.shape[0])
    states = [init_state(TrainConfig(batch_size=batch, seed=s)) for s in range(seeds)]
    keys = jnp.stack([seed_keys(s)[1] for s in range(seeds)])
    if seeds == 1:
        run = jax.jit(lambda s, e: epoch_fn(s, x_dev, y_dev, keys[0], e))
        state = states[0]
    else:
        vmapped = jax.vmap(epoch_fn, in_axes=(0, None, None, 0, None))
        run = jax.jit(lambda s, e: vmapped(s, x_dev, y_dev, keys, e))
        state = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states)
    epochs = iter(range(10**6))
    return lambda: run(state, next(epochs))


def sharpness_runner(loss_fn, params, method: str, results: list):
    """A zero-argument full-space sharpness call (eps 1e-3, 10 iterations); appends results."""

    def call():
        results.append(sharpness(loss_fn, params, 1e-3, maxiter=10, method=method))
        return results[-1].value

    return call


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="fashion_mnist", help="fashion_mnist, mnist or random")
    p.add_argument("--quick", action="store_true", help="6,000 images, 1 repeat: a smoke run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--methods", default="lbfgsb,lbfgsb-device", help="sharpness methods")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    n_train, n_test = (6000, 1000) if args.quick else (60000, 10000)
    repeats = 1 if args.quick else args.repeats
    name, x, y, xt, yt = load_images(args.data, n_train, n_test)
    n_train = len(x)
    rate = matmul_flops_per_second()
    config = TrainConfig(dataset=name)
    model = config.model()
    forward = matmul_flops_per_example(model)
    step = 3 * forward - 2 * INPUT_DIM * config.hidden[0]
    rows: list[dict] = []

    def row(name: str, flops: float, first: float, times: list[float], **extra) -> dict:
        median = statistics.median(times)
        rows.append(
            {
                "row": name,
                "seconds": median,
                "min": min(times),
                "max": max(times),
                "compile_seconds": max(first - median, 0.0),
                "gflop": flops / 1e9,
                "flop_bound_seconds": flops / rate,
                "ratio": median / (flops / rate),
                "peak_memory_gb": peak_memory_gb(),
                **extra,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        return rows[-1]

    x_dev, y_dev = jax.device_put(x), jax.device_put(y.astype(np.int32))
    epoch_rows = {}
    for batch in (256, round(0.1 * n_train)):
        for seeds in (1, 5):
            flops = seeds * (n_train // batch) * batch * step
            first, times = timed(epoch_runner(name, batch, seeds, x_dev, y_dev), repeats)
            extra = {"batch_size": batch, "seeds": seeds}
            if seeds > 1:
                extra["vs_sequential"] = statistics.median(times) / (
                    seeds * epoch_rows[batch]["seconds"]
                )
            label = f"epoch B={batch}" + (f" x{seeds} vmapped" if seeds > 1 else "")
            r = row(label, flops, first, times, **extra)
            if seeds == 1:
                epoch_rows[batch] = r

    state = init_state(config)
    loss_fn = make_loss_fn(model, state.batch_stats, x, y)
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    first, times = timed(lambda: value_and_grad(state.params), repeats)
    objective = row("objective value+grad", n_train * step, first, times)

    for method in args.methods.split(","):
        results: list = []
        first, times = timed(sharpness_runner(loss_fn, state.params, method, results), repeats)
        nfev = results[-1].nfev
        row(
            f"sharpness full ({method})",
            nfev * n_train * step,
            first,
            times,
            nfev=nfev,
            vs_nfev_objective=statistics.median(times) / (nfev * objective["seconds"]),
        )

    variables = {"params": state.params, "batch_stats": state.batch_stats}
    other = {"params": init_state(TrainConfig(seed=1)).params, "batch_stats": state.batch_stats}
    alphas = np.linspace(-1, 2, 25)
    splits = {"train": (x, y), "test": (xt, yt)}
    first, times = timed(lambda: evaluate_path(model, variables, other, alphas, splits), repeats)
    row("paths 25 alphas", 25 * (n_train + len(xt)) * forward, first, times)

    device = device_description()
    result = {
        "command": "python -m benchmarks.table " + " ".join(argv or sys.argv[1:]),
        "device": device,
        "data": name,
        "n_train": n_train,
        "matmul_gflops": rate / 1e9,
        "rows": rows,
        "jax": jax.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = Path(args.out or HERE / f"table_{jax.default_backend()}.json")
    out.write_text(json.dumps(result, indent=1))
    print(f"\n{device}, {name} ({n_train} train), matmul {rate / 1e9:.0f} GFLOP/s; wrote {out}")
    print("| row | seconds (min-max) | FLOP bound s | ratio | peak memory GB | other |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        other_cols = []
        if "vs_sequential" in r:
            other_cols.append(f"{r['vs_sequential']:.2f}x of 5 one-seed epochs")
        if "vs_nfev_objective" in r:
            other_cols.append(f"nfev {r['nfev']}, {r['vs_nfev_objective']:.2f}x nfev x objective")
        print(
            f"| {r['row']} | {r['seconds']:.3g} ({r['min']:.3g}-{r['max']:.3g}) | "
            f"{r['flop_bound_seconds']:.3g} | {r['ratio']:.2f} | {r['peak_memory_gb']:.2f} | "
            f"{'; '.join(other_cols)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
