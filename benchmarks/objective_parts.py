"""Timing by parts of one value-and-gradient of F1's full-split objective (issue 6's profile).

    python -m benchmarks.objective_parts                 # Fashion-MNIST, 60,000 images

Rows, each one value-and-gradient over N images in chunks of 5000 (BN policy "batch"), median
of --repeats after a compiling call, as a ratio to the FLOP bound N x (3F - 2 x 784 x 512):

- plain chain, matmuls only: x -> W1 -> ... -> W6 with no bias, batch norm or ReLU, written in
  plain jax.numpy; the chunk gradients summed in a `lax.scan`. What the matmuls alone cost at
  these shapes (the bound's 2048 x 2048 rate is not reached by 5000 x 512 products).
- plain chain + ReLU, + batch norm (mean/variance over the chunk, no scale or offset): what the
  elementwise work adds.
- package, gradient through the scan: jax.value_and_grad of `split_metrics` (the objective
  before issue 6: one backward pass over every chunk's stored activations).
- package, chunk-wise gradient: `make_loss_fn` (`split_loss_and_grad`: each chunk's backward
  pass right after its forward pass).

--experiments adds the attempts at the elementwise part: batch norm + ReLU with a hand-written
backward pass (`jax.custom_vjp`), and the plain chain under three XLA CPU flags.

Peak memory is measured per row in a fresh subprocess (resident set on a CPU, device memory on
a GPU), so it is that row's alone. Prints a markdown table; the JSON goes to
benchmarks/objective_parts_<platform>.json.
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

from benchmarks.hardware import (  # noqa: E402
    device_description,
    matmul_flops_per_second,
    run_row_in_subprocess,
    time_call,
)
from benchmarks.table import load_images, peak_memory_gb  # noqa: E402
from keskar_repro.models import INPUT_DIM, matmul_flops_per_example  # noqa: E402
from keskar_repro.objective import (  # noqa: E402
    DEFAULT_CHUNK_SIZE,
    make_loss_fn,
    replicate,
    split_metrics,
)
from keskar_repro.train import TrainConfig, init_state  # noqa: E402

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
        h = x_uint8.reshape((x_uint8.shape[0], -1)).astype(jnp.float32) / 255.0
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
    state = init_state(config)
    if row == "package chunk-wise":
        value_and_grad = jax.jit(jax.value_and_grad(make_loss_fn(model, state.batch_stats, x, y)))
    else:
        x_dev, y_dev = replicate(x), replicate(y)

        def loss(params):
            return split_metrics(model, params, state.batch_stats, x_dev, y_dev)[0]

        value_and_grad = jax.jit(jax.value_and_grad(loss))
    return lambda: value_and_grad(state.params)


def measure(row: str, data: str, repeats: int) -> dict:
    """{"seconds", "min", "max", "peak_memory_gb"} of `row` in this process."""
    _, x, y, _, _ = load_images(data, 60000, 0)
    n = len(x) - len(x) % DEFAULT_CHUNK_SIZE
    call = row_call(row, x[:n], y[:n].astype(np.int32))
    times = time_call(call, repeats=repeats)
    return {
        "row": row,
        "n": n,
        "seconds": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "peak_memory_gb": peak_memory_gb(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="fashion_mnist", help="fashion_mnist, mnist or random")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--experiments", action="store_true", help="also the rejected attempts")
    p.add_argument("--row", default=None, help=argparse.SUPPRESS)  # one row, in a subprocess
    args = p.parse_args(argv)
    if args.row:
        print(json.dumps(measure(args.row, args.data, args.repeats)))
        return 0

    rate = matmul_flops_per_second()
    model = TrainConfig().model()
    step = 3 * matmul_flops_per_example(model) - 2 * INPUT_DIM * model.hidden[0]
    rows = []
    flags = {row: "" for row in ROWS} | (EXPERIMENTS if args.experiments else {})
    for row, xla_flags in flags.items():
        options = ("--data", args.data, "--repeats", str(args.repeats))
        env = {"XLA_FLAGS": xla_flags} if xla_flags else None
        r = run_row_in_subprocess("benchmarks.objective_parts", row, *options, env=env)
        r["flop_bound_seconds"] = r["n"] * step / rate
        r["ratio"] = r["seconds"] / r["flop_bound_seconds"]
        rows.append(r)
        print(json.dumps(r), flush=True)

    device = device_description()
    result = {
        "command": "python -m benchmarks.objective_parts " + " ".join(argv or sys.argv[1:]),
        "device": device,
        "data": args.data,
        "matmul_gflops": rate / 1e9,
        "rows": rows,
        "jax": jax.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    suffix = "_experiments" if args.experiments else ""
    out_path = HERE / f"objective_parts_{jax.default_backend()}{suffix}.json"
    out_path.write_text(json.dumps(result, indent=1))
    print(f"\n{device}, {args.data}, matmul {rate / 1e9:.0f} GFLOP/s; wrote {out_path}")
    print("| value-and-gradient | seconds (min-max) | ratio to FLOP bound | peak memory GB |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['row']} | {r['seconds']:.3g} ({r['min']:.3g}-{r['max']:.3g}) | "
            f"{r['ratio']:.2f} | {r['peak_memory_gb']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
