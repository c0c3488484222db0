"""Exact mean cross-entropy and accuracy of a network over a whole data split, for any BN policy.

The training objective of the paper is the mean softmax cross-entropy over the training set,

    f(params) = (1/N) sum_{i=1..N} CE(softmax(net(params, x_i)), y_i),

with pixels scaled to [0, 1], under an explicit batch-norm policy
(keskar_repro.training.bn_policies).

Cross-entropy keeps its relative precision at tiny values. The usual float32 form
logsumexp(z) - z_y subtracts two numbers of size |z_y| to get a result of size ~exp(-margin):
at a logit margin of 17 it returns exactly 0 (the true value is 3.7e-7), at 16 it is off by a
factor of 2, and a converged LB minimizer (mean loss ~3.5e-5) is just there. `cross_entropy`
computes the same function as

    CE(z, y) = log(1 + sum_{j != y} exp(d_j)) = M + log1p(expm1(-M) + sum_{j != y} exp(d_j - M)),

with d_j = z_j - z_y and M = max(0, max_{j != y} d_j) (held constant for the derivative, as in
logsumexp): for a confident example (M = 0) it is log1p of a small sum, exact to float32's
relative precision; for a wrong one (M > 0) nothing overflows. Training and every objective use
it (tests/test_objective.py checks it against float64 at margins 0 to 40).

Everything here is a pure function of the parameters and is jit-compiled: one call evaluates the
whole split (a `lax.scan` over chunks), with no Python loop and no host-device copy. With several
devices each chunk is split over them (parallel.py); the value does not depend on how many.

The gradient is accumulated chunk by chunk. The chunks are independent (each has its own batch
statistics, or none), so with S_c the sum of the cross-entropies of chunk c,

    grad f(params) = (1/N) sum_c grad S_c(params),

and each chunk's backward pass can run right after its forward pass. Differentiating the scan
instead would store every chunk's activations for one backward pass over all of them (about
3 GB for F1 on 60,000 images) and took 1.4x as long on a 2-core CPU (benchmarks/README.md).
`make_loss_fn` therefore returns a function whose reverse-mode derivative is this accumulation
(a `jax.custom_vjp`); peak memory is one chunk's forward and backward pass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from keskar_repro.devices.parallel import replicate, shard_examples
from keskar_repro.training.bn_policies import (
    DEFAULT_CHUNK_SIZE,
    apply_model,
    check_bn_policy,
    chunk_length,
)


def scale_pixels(x_uint8: jax.Array) -> jax.Array:
    """uint8 images (..., 28, 28) -> float32 rows in [0, 1] (the paper's only preprocessing)."""
    return x_uint8.reshape((x_uint8.shape[0], -1)).astype(jnp.float32) / 255.0


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy (nats) of integer `labels`, precise at tiny values
    (module docstring). Same value as optax.softmax_cross_entropy_with_integer_labels where
    that one is accurate; shape logits.shape[:-1]."""
    z_y = jnp.take_along_axis(logits, labels[..., None].astype(jnp.int32), axis=-1)
    others = jnp.arange(logits.shape[-1]) != labels[..., None]
    d = jnp.where(others, logits - z_y, -jnp.inf)  # d_j = z_j - z_y, j != y
    m = jax.lax.stop_gradient(jnp.maximum(jnp.max(d, axis=-1, keepdims=True), 0.0))
    total = jnp.expm1(-m) + jnp.sum(jnp.exp(d - m), axis=-1, keepdims=True)
    return (m + jnp.log1p(total))[..., 0]


def chunk_sums(
    model, params, batch_stats, x_uint8: jax.Array, y: jax.Array, bn_policy: str
) -> tuple[jax.Array, jax.Array]:
    """(sum of cross-entropies, number correct) over one chunk under `bn_policy`."""
    variables = {"params": params, "batch_stats": batch_stats}
    logits = apply_model(model, variables, shard_examples(scale_pixels(x_uint8)), bn_policy)
    losses = cross_entropy(logits, shard_examples(y))
    correct = jnp.sum(jnp.argmax(logits, axis=-1) == y)
    return jnp.sum(losses), correct


def _sum_over_chunks(chunk_fn: Callable, x_uint8: jax.Array, y: jax.Array, chunk: int) -> tuple:
    """sum_c chunk_fn(x_c, y_c) over the fixed chunks of `chunk` consecutive examples, then the
    remainder chunk: a `lax.scan` whose carry is the running sum (any pytree of arrays)."""
    n = x_uint8.shape[0]
    n_chunks, remainder = divmod(n, chunk)
    head = n_chunks * chunk
    xs = x_uint8[:head].reshape((n_chunks, chunk, *x_uint8.shape[1:]))
    ys = y[:head].reshape((n_chunks, chunk))
    shapes = jax.eval_shape(chunk_fn, xs[0], ys[0])
    zero = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def body(total, xy):
        return jax.tree_util.tree_map(jnp.add, total, chunk_fn(*xy)), None

    total, _ = jax.lax.scan(body, zero, (xs, ys))
    if remainder:
        total = jax.tree_util.tree_map(jnp.add, total, chunk_fn(x_uint8[head:], y[head:]))
    return total


def split_metrics(
    model,
    params,
    batch_stats,
    x_uint8: jax.Array,
    y: jax.Array,
    *,
    bn_policy: str = "batch",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy (nats) and accuracy (fraction) of `model` over the whole split.

    The split is cut into floor(N / chunk_size) chunks of `chunk_size` examples, scanned in one
    compiled loop, plus one remainder chunk; under "full" the chunk is the whole split. Shapes
    are static, so this function is jit-able and differentiable in `params` (any order, any
    mode; for one gradient, `split_loss_and_grad` is faster and needs less memory).
    """
    n = x_uint8.shape[0]
    chunk = chunk_length(n, bn_policy, chunk_size)
    loss_sum, correct = _sum_over_chunks(
        lambda xc, yc: chunk_sums(model, params, batch_stats, xc, yc, bn_policy), x_uint8, y, chunk
    )
    return loss_sum / n, correct / n


def split_loss_and_grad(
    model,
    params,
    batch_stats,
    x_uint8: jax.Array,
    y: jax.Array,
    *,
    bn_policy: str = "batch",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[jax.Array, object]:
    """(mean cross-entropy f, grad f with respect to `params`) over the whole split.

    The same value as `split_metrics`; the gradient is (1/N) sum_c grad S_c, each chunk's
    backward pass run right after its forward pass inside one `lax.scan`.
    """
    n = x_uint8.shape[0]
    chunk = chunk_length(n, bn_policy, chunk_size)

    def chunk_loss_sum(p, xc, yc):
        return chunk_sums(model, p, batch_stats, xc, yc, bn_policy)[0]

    chunk_value_and_grad = jax.value_and_grad(chunk_loss_sum)
    loss_sum, grad_sum = _sum_over_chunks(
        lambda xc, yc: chunk_value_and_grad(params, xc, yc), x_uint8, y, chunk
    )
    return loss_sum / n, jax.tree_util.tree_map(lambda g: g / n, grad_sum)


def make_loss_fn(
    model,
    batch_stats,
    x_uint8,
    y,
    *,
    bn_policy: str = "batch",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Callable:
    """`loss_fn(params) -> scalar`: the exact mean cross-entropy over (x, y), jit-compiled.

    `batch_stats` (the stored running averages) is only read under bn_policy="running".
    The data are moved to the devices once, here (replicated; each chunk is split over the
    devices inside the program: see parallel.py).

    Reverse mode (`jax.grad`, `jax.value_and_grad`, vjp) uses `split_loss_and_grad`. The
    function is a `jax.custom_vjp`, so it has no forward mode of its own (`jax.jvp(loss_fn)`
    raises), but forward over reverse works: `jax.jvp(jax.grad(loss_fn), ...)` (and
    `jax.hessian`) differentiates `split_loss_and_grad` in forward mode, chunk by chunk in the
    same scan; that is the Hessian-vector product of keskar_repro.measures.curvature
    (tests/test_curvature.py checks it under every BN policy).
    """
    check_bn_policy(bn_policy)
    x_dev, y_dev = replicate(x_uint8), replicate(np.asarray(y, np.int32))
    options = {"bn_policy": bn_policy, "chunk_size": chunk_size}

    @jax.custom_vjp
    def loss(params):
        return split_metrics(model, params, batch_stats, x_dev, y_dev, **options)[0]

    def loss_and_grad(params):
        return split_loss_and_grad(model, params, batch_stats, x_dev, y_dev, **options)

    def scale_grad(grad, cotangent):
        return (jax.tree_util.tree_map(lambda g: cotangent * g, grad),)

    loss.defvjp(loss_and_grad, scale_grad)
    return jax.jit(loss)


def objective_data(batch_stats, x_uint8, y) -> dict:
    """The data argument of `data_loss_fn`'s loss: {"batch_stats", "x", "y"}, the images and
    labels moved to the devices once (replicated; each chunk is split over the devices inside
    the program)."""
    return {
        "batch_stats": batch_stats,
        "x": replicate(x_uint8),
        "y": replicate(np.asarray(y, np.int32)),
    }


@functools.lru_cache(maxsize=16)
def data_loss_fn(
    model, *, bn_policy: str = "batch", chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Callable:
    """`loss(params, data) -> scalar`: `make_loss_fn`'s objective with the data
    (`objective_data(batch_stats, x, y)`) as an argument instead of constants.

    One function object per (model, bn_policy, chunk_size), so a measurement that compiles per
    loss function (keskar_repro.measures: `measure(loss, params, ..., data=data)`) compiles
    once for every run and snapshot of a shape, and XLA does not embed (and constant-fold) a
    split in each program. Same value and gradient as `make_loss_fn(model, batch_stats, x, y)`
    (tests/test_objective.py checks them bit for bit); the data get no derivative.
    """
    check_bn_policy(bn_policy)
    options = {"bn_policy": bn_policy, "chunk_size": chunk_size}

    def parts(data):
        return data["batch_stats"], data["x"], data["y"]

    @jax.custom_vjp
    def loss(params, data):
        return split_metrics(model, params, *parts(data), **options)[0]

    def loss_and_grad(params, data):
        return split_loss_and_grad(model, params, *parts(data), **options)

    def scale_grad(grad, cotangent):
        return jax.tree_util.tree_map(lambda g: cotangent * g, grad), None

    loss.defvjp(loss_and_grad, scale_grad)
    return loss


def metrics_data(batch_stats, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """The data argument of `data_metrics_fn`'s function: {"batch_stats", "splits": {name:
    {"x", "y"}}}, every split moved to the devices once (replicated)."""
    return {
        "batch_stats": batch_stats,
        "splits": {
            name: {"x": replicate(x), "y": replicate(np.asarray(y, np.int32))}
            for name, (x, y) in splits.items()
        },
    }


@functools.lru_cache(maxsize=16)
def data_metrics_fn(
    model, *, bn_policy: str = "batch", chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Callable:
    """`metrics(params, data) -> {"<split>_loss", "<split>_accuracy"}`: `split_metrics` of every
    split in `metrics_data(batch_stats, splits)`, with the data an argument (one function object
    per model, policy and chunk size, so one compilation per shape, as `data_loss_fn`)."""
    check_bn_policy(bn_policy)

    def metrics(params, data):
        out = {}
        for name, split in data["splits"].items():
            loss, accuracy = split_metrics(
                model, params, data["batch_stats"], split["x"], split["y"],
                bn_policy=bn_policy, chunk_size=chunk_size,
            )  # fmt: skip
            out[f"{name}_loss"], out[f"{name}_accuracy"] = loss, accuracy
        return out

    return metrics
