"""Timing by parts of one value-and-gradient of F1's full-split objective (a profile).

    python -m benchmarks.objective_parts                 # Fashion-MNIST, 60,000 images
    python benchmarks/objective_parts.py --dataset random --n 5000 --repeats 1   # a smoke run

Rows, each one value-and-gradient over N images in chunks of 5000 (BN policy "batch"), median
of --repeats after a compiling call, as a ratio to the FLOP bound
N x `models.train_step_flops_per_example` (3F - 2 x 784 x 512 for F1):

- plain chain, matmuls only: x -> W1 -> ... -> W6 with no bias, batch norm or ReLU, written in
  plain jax.numpy; the chunk gradients summed in a `lax.scan`. What the matmuls alone cost at
  these shapes (the bound's 2048 x 2048 rate is not reached by 5000 x 512 products).
- plain chain + ReLU, + batch norm (mean/variance over the chunk, no scale or offset): what the
  elementwise work adds.
- package, gradient through the scan: jax.value_and_grad of `split_metrics` (the objective
  before the chunk-wise gradient: one backward pass over every chunk's stored activations).
- package, chunk-wise gradient: `make_loss_fn` (`split_loss_and_grad`: each chunk's backward
  pass right after its forward pass).

--experiments adds the attempts at the elementwise part: batch norm + ReLU with a hand-written
backward pass (`jax.custom_vjp`), and the plain chain under three XLA CPU flags.

Peak memory is measured per row in a fresh subprocess (resident set on a CPU, device memory on
a GPU), so it is that row's alone. Prints a markdown table; the JSON goes to
benchmarks/objective_parts_<platform>.json (or --out). The measured tables are in
benchmarks/README.md.
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

from benchmarks.common import (  # noqa: E402
    HERE,
    add_dataset_option,
    load_images,
    markdown_table,
    matmul_flops_per_second,
    peak_memory_gb,
    record,
    run_row_in_subprocess,
    spread,
    timed,
)
from keskar_repro.devices.parallel import replicate  # noqa: E402
from keskar_repro.training.bn_policies import DEFAULT_CHUNK_SIZE  # noqa: E402
from keskar_repro.training.models import INPUT_DIM, train_step_flops_per_example  # noqa: E402
from keskar_repro.training.objective import make_loss_fn, scale_pixels, split_metrics  # noqa: E402
from keskar_repro.training.train import TrainConfig, initial_state  # noqa: E402

ROWS = ("matmuls", "matmuls+relu", "matmuls+bn+relu", "package scan-gradient", "package chunk-wise")
# --experiments: attempts at the elementwise part, none adopted (benchmarks/README.md)
EXPERIMENTS = {
    "matmuls+bn+relu, hand-written vjp": "",
    "matmuls+bn+relu, --xla_cpu_use_thunk_runtime=false": "--xla_cpu_use_thunk_runtime=false",
    "matmuls+bn+relu, --xla_cpu_use_xnnpack=true": "--xla_cpu_use_xnnpack=true",
    "matmuls+bn+relu, --xla_cpu_enable_fast_math=true": "--xla_cpu_enable_fast_math=true",
}


def _bn_relu(h: jax.Array) -> jax.Array:
    mean = h.mean(0)
    return jax.nn.relu((h - mean) * jax.lax.rsqrt((h * h).mean(0) - mean * mean + 1e-3))


@jax.custom_vjp
def _bn_relu_by_hand(h: jax.Array) -> jax.Array:
    return _bn_relu(h)


def _bn_relu_forward(h):
    mean = h.mean(0)
    inv_std = jax.lax.rsqrt((h * h).mean(0) - mean * mean + 1e-3)
    out = jax.nn.relu((h - mean) * inv_std)
    return out, (h, mean, inv_std, out)


def _bn_relu_backward(saved, d_out):
    """d h = inv_std (g - mean(g) - xhat mean(g xhat)), g = d_out masked by the ReLU."""
    h, mean, inv_std, out = saved
    g = jnp.where(out > 0, d_out, 0.0)
    xhat = (h - mean) * inv_std
    return (inv_std * (g - g.mean(0) - xhat * (g * xhat).mean(0)),)


_bn_relu_by_hand.defvjp(_bn_relu_forward, _bn_relu_backward)
ACTIVATIONS = {
    "none": lambda h: h,
    "relu": jax.nn.relu,
    "bn+relu": _bn_relu,
    "bn+relu by hand": _bn_relu_by_hand,
}


def plain_chain_gradient(activation: str, images: jax.Array, widths: list[int]):
    """A jitted value-and-gradient of sum(chain(x)) over `images` in chunks of 5000, the chain
    being plain matmuls (no biases) with ACTIVATIONS[activation] between."""
    act = ACTIVATIONS[activation]

    def chunk_sum(weights, x_uint8):
        h = scale_pixels(x_uint8)
        for w in weights[:-1]:
            h = act(h @ w)
        return jnp.sum(h @ weights[-1])

    chunk_value_and_grad = jax.value_and_grad(chunk_sum)
    chunks = images.reshape((-1, DEFAULT_CHUNK_SIZE, *images.shape[1:]))

    @jax.jit
    def value_and_grad(weights):
        def body(total, x):
            return jax.tree_util.tree_map(jnp.add, total, chunk_value_and_grad(weights, x)), None

        zero = (jnp.zeros(()), [jnp.zeros_like(w) for w in weights])
        return jax.lax.scan(body, zero, chunks)[0]

    keys = jax.random.split(jax.random.key(0), len(widths) - 1)
    weights = [
        jax.random.normal(k, (a, b)) / np.sqrt(a)
        for k, a, b in zip(keys, widths[:-1], widths[1:], strict=True)
    ]
    return lambda: value_and_grad(weights)


def row_call(row: str, x: np.ndarray, y: np.ndarray):
    """A zero-argument call of `row`'s value-and-gradient."""
    config = TrainConfig()
    model = config.model()
    if row.startswith("matmuls"):
        activation = {"matmuls": "none", "matmuls+relu": "relu"}.get(row, "bn+relu")
        if "hand-written" in row:
            activation = "bn+relu by hand"
        widths = [INPUT_DIM, *config.hidden, model.n_classes]
        return plain_chain_gradient(activation, replicate(x), widths)
    state = initial_state(config)
    if row == "package chunk-wise":
        value_and_grad = jax.jit(jax.value_and_grad(make_loss_fn(model, state.batch_stats, x, y)))
    else:
        x_dev, y_dev = replicate(x), replicate(y)

        def loss(params):
            return split_metrics(model, params, state.batch_stats, x_dev, y_dev)[0]

        value_and_grad = jax.jit(jax.value_and_grad(loss))
    return lambda: value_and_grad(state.params)


def measure(row: str, data: str, n_images: int, repeats: int) -> dict:
    """{"row", "n", "seconds", "min", "max", "peak_memory_gb"} of `row` in this process."""
    _, x, y, _, _ = load_images(data, n_images, 0)
    n = len(x) - len(x) % DEFAULT_CHUNK_SIZE
    if n == 0:
        raise SystemExit(f"--n {n_images}: need at least one chunk of {DEFAULT_CHUNK_SIZE}")
    times = timed(row_call(row, x[:n], y[:n]), repeats)[1]
    return {"row": row, "n": n, **spread(times), "peak_memory_gb": peak_memory_gb()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataset_option(p)
    p.add_argument("--n", type=int, default=60000, help="images (whole chunks of 5000)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--experiments", action="store_true", help="also the rejected attempts")
    p.add_argument("--out", default=None, help="default: benchmarks/objective_parts_<platform>")
    p.add_argument("--row", default=None, help=argparse.SUPPRESS)  # one row, in a subprocess
    args = p.parse_args(argv)
    if args.row:
        print(json.dumps(measure(args.row, args.dataset, args.n, args.repeats)))
        return 0

    rate = matmul_flops_per_second()
    step = train_step_flops_per_example(TrainConfig().model())
    rows = []
    flags = {row: "" for row in ROWS} | (EXPERIMENTS if args.experiments else {})
    for row, xla_flags in flags.items():
        options = ("--dataset", args.dataset, "--n", str(args.n), "--repeats", str(args.repeats))
        env = {"XLA_FLAGS": xla_flags} if xla_flags else None
        r = run_row_in_subprocess("benchmarks.objective_parts", row, *options, env=env)
        r["flop_bound_seconds"] = r["n"] * step / rate
        r["ratio"] = r["seconds"] / r["flop_bound_seconds"]
        rows.append(r)
        print(json.dumps(r), flush=True)

    result = record("objective_parts", argv, data=args.dataset, matmul_gflops=rate / 1e9, rows=rows)
    suffix = "_experiments" if args.experiments else ""
    out_path = Path(args.out or HERE / f"objective_parts_{jax.default_backend()}{suffix}.json")
    out_path.write_text(json.dumps(result, indent=1))
    print(
        f"\n{result['device']}, {args.dataset}, matmul {rate / 1e9:.0f} GFLOP/s; wrote {out_path}"
    )
    header = ("value-and-gradient", "seconds (min-max)", "ratio to FLOP bound", "peak memory GB")
    cells = [
        (
            r["row"],
            f"{r['seconds']:.3g} ({r['min']:.3g}-{r['max']:.3g})",
            f"{r['ratio']:.2f}",
            f"{r['peak_memory_gb']:.2f}",
        )
        for r in rows
    ]
    print(markdown_table(header, cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
