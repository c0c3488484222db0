"""The machine's real matmul limit for each GEMM of an F1 training step, whichever library
reaches it.

    python -m benchmarks.gemm_bound                        # batch 256 and 6000
    python -m benchmarks.gemm_bound --batch-sizes 256 --repeats 50

One F1 step at batch B (`f1_step_gemms`) multiplies, in float32, (m, k) @ (k, n):

    forward       x_l W_l:          (B, 784) @ (784, 512), 4 x (B, 512) @ (512, 512),
                                    (B, 512) @ (512, 10)
    weight grads  x_l^T dy_l:       (784, B) @ (B, 512),   4 x (512, B) @ (B, 512),
                                    (512, B) @ (B, 10)
    input grads   dy_l W_l^T:       4 x (B, 512) @ (512, 512), (B, 10) @ (10, 512)
                                    (none for the first layer: nothing needs the images')

(2 m k n FLOPs each; their sum is `models.train_step_flops_per_example` x B). Each distinct
product, in the operand layout the step uses (a transposed operand as a transposed view), is
timed with jitted JAX (eight products in one compiled scan, so that a call's dispatch does not
count, as it does not inside a training step), NumPy's BLAS and, where the `peers` extra is
installed, PyTorch (oneDNN / MKL): the median of --repeats calls after a warm-up. The best
rate of each product and the library that reached it make the step's real bound, the sum over
its products of FLOPs / best rate: the time no library on this machine beats for that step's
matmuls (batch norm, ReLU, the loss and Adam are elementwise and left out, as in the FLOP
bound). The last line printed is JSON; benchmarks/README.md has the measured table.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import markdown_table, record  # noqa: E402
from keskar_repro.training.models import F1_HIDDEN, INPUT_DIM, N_CLASSES  # noqa: E402

# (m, k, n, transposed operand: "" | "a" | "b", how many per step)
Gemm = tuple[int, int, int, str, int]


def f1_step_gemms(batch: int, hidden: tuple[int, ...] = F1_HIDDEN) -> list[Gemm]:
    """The distinct matmuls of one F1 training step at `batch` (module docstring), each with
    its count; "a": the first operand is used transposed (x^T dy), "b": the second (dy W^T)."""
    widths = [INPUT_DIM, *hidden, N_CLASSES]
    layers = list(zip(widths[:-1], widths[1:], strict=True))
    counts: dict[Gemm, int] = {}

    def add(m, k, n, t):
        counts[(m, k, n, t, 0)] = counts.get((m, k, n, t, 0), 0) + 1

    for i, (d_in, d_out) in enumerate(layers):
        add(batch, d_in, d_out, "")  # forward
        add(d_in, batch, d_out, "a")  # weight gradient
        if i:  # input gradient of every layer but the first
            add(batch, d_out, d_in, "b")
    return [(m, k, n, t, c) for (m, k, n, t, _), c in counts.items()]


def gemms_of(fn: Callable, *args) -> list[Gemm]:
    """The matmuls `fn(*args)` performs, read from its jaxpr: every `dot_general`, inside
    nested jaxprs too (a `lax.scan` body counted `length` times), as (m, k, n, transposed,
    count) with the free dimensions of each operand flattened into m and n and batch dimensions
    into the count. "a" marks a first operand contracted over its leading axis (x^T dy), "b" a
    second contracted over its trailing axis (dy W^T). The jaxpr after the dead-code
    elimination jit applies (an HVP's `jax.jvp` also computes the gradient, whose weight
    products nothing uses), as XLA receives it; XLA's own rewriting is not modelled."""
    from jax._src.interpreters.partial_eval import dce_jaxpr  # jit's own; no public API has it
    from jax.extend.core import jaxprs_in_params

    counts: dict[tuple, int] = {}

    def walk(jaxpr, times: int) -> None:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                key, batch = _dot_shape(eqn)
                counts[key] = counts.get(key, 0) + times * batch
            inner = times * eqn.params.get("length", 1) if eqn.primitive.name == "scan" else times
            for sub in jaxprs_in_params(eqn.params):
                walk(sub, inner)

    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    walk(dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))[0], 1)
    return [(*key, c) for key, c in counts.items()]


def _dot_shape(eqn) -> tuple[tuple[int, int, int, str], int]:
    """((m, k, n, transposed), batch count) of one dot_general equation."""
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = (v.aval.shape for v in eqn.invars)

    def size(shape, axes):
        return math.prod(shape[i] for i in axes)

    def free(shape, contracted, batch):
        return [i for i in range(len(shape)) if i not in contracted and i not in batch]

    m, n = size(lhs, free(lhs, lc, lb)), size(rhs, free(rhs, rc, rb))
    t = ("a" if len(lhs) == 2 and tuple(lc) == (0,) else "") + (
        "b" if len(rhs) == 2 and tuple(rc) == (1,) else ""
    )
    return (m, size(lhs, lc), n, t), size(lhs, lb)


def step_flops(gemms: list[Gemm]) -> int:
    return sum(2 * m * k * n * c for m, k, n, _, c in gemms)


def operands(m: int, k: int, n: int, t: str) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal float32 operands of (m, k) @ (k, n), each stored as the product uses it:
    the first as (k, m) when t has "a", the second as (n, k) when t has "b"."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if "a" in t else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if "b" in t else (k, n), dtype=np.float32)
    return a, b


def _median_seconds(call: Callable[[], object], repeats: int, sync=lambda out: out) -> float:
    sync(call())  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sync(call())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_jax(a, b, t: str, repeats: int, product: Callable | None = None) -> float:
    """Seconds per product inside one jitted `lax.scan` over `STACK` distinct first operands
    (one dispatch per call, as in the training step's compiled program, and no product the
    compiler could hoist out of the loop), divided by `STACK`. `product(x, y)`: XLA's dot by
    default."""
    product = product or _PRODUCTS[t]
    stack = jax.device_put(np.stack([a + np.float32(i) for i in range(STACK)]))
    db = jax.device_put(b)

    shape = jax.eval_shape(_PRODUCTS[t], stack[0], db).shape

    @jax.jit
    def many(stack, y):
        zeros = jnp.zeros(shape, jnp.float32)
        return jax.lax.scan(lambda c, x: (c + product(x, y), None), zeros, stack)[0]

    return _median_seconds(lambda: many(stack, db), repeats, jax.block_until_ready) / STACK


_PRODUCTS = {"": lambda x, y: x @ y, "a": lambda x, y: x.T @ y, "b": lambda x, y: x @ y.T,
             "ab": lambda x, y: x.T @ y.T}  # fmt: skip


def time_jax_callback(a, b, t: str, repeats: int) -> float:
    """`time_jax` with each product a `jax.pure_callback` to NumPy's BLAS inside the compiled
    program: the one way to call another library's GEMM from jitted code without building a
    C++ extension (an XLA FFI custom call), and what it costs here."""

    def product(x, y):
        out = jax.ShapeDtypeStruct(jax.eval_shape(_PRODUCTS[t], x, y).shape, x.dtype)
        return jax.pure_callback(lambda u, v: np.asarray(_PRODUCTS[t](u, v)), out, x, y)

    return time_jax(a, b, t, repeats, product)


STACK = 8  # products per timed JAX call


def time_numpy(a, b, t: str, repeats: int) -> float:
    x, y = (a.T if "a" in t else a), (b.T if "b" in t else b)
    return _median_seconds(lambda: x @ y, repeats)


def time_torch(a, b, t: str, repeats: int) -> float | None:
    try:
        import torch
    except ImportError:  # the `peers` extra is optional
        return None
    x, y = torch.from_numpy(a), torch.from_numpy(b)
    x, y = (x.t() if "a" in t else x), (y.t() if "b" in t else y)
    with torch.no_grad():
        return _median_seconds(lambda: x @ y, repeats)


LIBRARIES = {"jax": time_jax, "numpy": time_numpy, "torch": time_torch}
# --callback: also JAX calling NumPy's BLAS from the compiled program (never the best here)
CALLBACK = {"jax callback": time_jax_callback}


def bound(gemms: list[Gemm], repeats: int, libraries: dict = LIBRARIES) -> dict:
    """Every product of `gemms`: GFLOP/s per library, the best and its library; and the bound
    (seconds) of all of them from the best rates and from each library's alone."""
    products = []
    for m, k, n, t, count in gemms:
        a, b = operands(m, k, n, t)
        seconds = {lib: fn(a, b, t, repeats) for lib, fn in libraries.items()}
        rates = {lib: 2 * m * k * n / s / 1e9 for lib, s in seconds.items() if s}
        best = max(rates, key=rates.get)
        products.append({"m": m, "k": k, "n": n, "transposed": t, "count": count,
                         "gflops": rates, "best": best, "best_gflops": rates[best]})  # fmt: skip
    libraries = sorted({lib for p in products for lib in p["gflops"]})
    seconds = {lib: sum(2 * p["m"] * p["k"] * p["n"] * p["count"] / (p["gflops"][lib] * 1e9)
                        for p in products) for lib in libraries}  # fmt: skip
    seconds["best"] = sum(2 * p["m"] * p["k"] * p["n"] * p["count"] / (p["best_gflops"] * 1e9)
                          for p in products)  # fmt: skip
    return {"products": products, "bound_seconds": seconds, "flops": step_flops(gemms)}


def measure(batch: int, repeats: int, libraries: dict = LIBRARIES) -> dict:
    """`bound` of one F1 step at `batch` (its keys named for a step, as the JSON records them)."""
    b = bound(f1_step_gemms(batch), repeats, libraries)
    return {"batch_size": batch, "products": b["products"],
            "step_bound_seconds": b["bound_seconds"], "step_flops": b["flops"]}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="256,6000", help="comma-separated")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per product")
    parser.add_argument("--out", default=None, help="write the JSON record here too")
    parser.add_argument(
        "--callback", action="store_true", help="also time JAX calling NumPy through pure_callback"
    )
    args = parser.parse_args(argv)
    libraries = LIBRARIES | (CALLBACK if args.callback else {})
    results = [measure(int(b), args.repeats, libraries) for b in args.batch_sizes.split(",")]
    for r in results:
        rows = [(f"({p['m']}, {p['k']}) @ ({p['k']}, {p['n']})" + (f" {p['transposed']}^T"
                 if p["transposed"] else ""), p["count"],
                 *(f"{p['gflops'].get(lib, float('nan')):.0f}" for lib in libraries), p["best"])
                for p in r["products"]]  # fmt: skip
        print(f"batch {r['batch_size']}: GFLOP/s per product (median of {args.repeats})")
        print(markdown_table(["product", "per step", *libraries, "best"], rows))
        print("step bound (ms): " + ", ".join(
            f"{k} {v * 1e3:.2f}" for k, v in r["step_bound_seconds"].items()))  # fmt: skip
    out = record("gemm_bound", argv, results=results)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
