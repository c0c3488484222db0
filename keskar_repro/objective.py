"""Exact mean cross-entropy and accuracy of a network over a whole data split, for any BN policy.

The training objective of the paper is the mean softmax cross-entropy over the training set,

    f(params) = (1/N) sum_{i=1..N} CE(softmax(net(params, x_i)), y_i),

with pixels scaled to [0, 1]. A batch-normalised network's output depends on which statistics
normalise it, so the batch-norm policy is an explicit argument:

- "batch":   each fixed chunk of `chunk_size` consecutive examples is normalised with its own
             batch statistics (the authors' Keras 1 code, BN mode=2, evaluated in batches of
             5000); the last, smaller chunk uses its own statistics too.
- "full":    the whole split is one batch: statistics over all N examples.
- "running": the running averages stored during training (standard "eval mode"); chunking then
             only bounds memory and does not change the value.

Everything here is a pure function of the parameters and is jit-compiled: one call evaluates the
whole split (a `lax.scan` over chunks), with no Python loop and no host-device copy. With several
devices each chunk is split over them (parallel.py); the value does not depend on how many.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from keskar_repro.parallel import replicate, shard_examples

BN_POLICIES: tuple[str, ...] = ("batch", "full", "running")
DEFAULT_CHUNK_SIZE = 5000


def check_bn_policy(bn_policy: str) -> None:
    """Raise a ValueError naming `bn_policy` unless it is one of BN_POLICIES."""
    if bn_policy not in BN_POLICIES:
        raise ValueError(f"bn_policy={bn_policy!r} is not one of {BN_POLICIES}")


def scale_pixels(x_uint8: jax.Array) -> jax.Array:
    """uint8 images (..., 28, 28) -> float32 rows in [0, 1] (the paper's only preprocessing)."""
    return x_uint8.reshape((x_uint8.shape[0], -1)).astype(jnp.float32) / 255.0


def chunk_sums(
    model, params, batch_stats, x_uint8: jax.Array, y: jax.Array, bn_policy: str
) -> tuple[jax.Array, jax.Array]:
    """(sum of cross-entropies, number correct) over one chunk under `bn_policy`."""
    variables = {"params": params, "batch_stats": batch_stats}
    x = shard_examples(scale_pixels(x_uint8))
    if bn_policy == "running":
        logits = model.apply(variables, x, use_running_average=True)
    else:
        logits, _ = model.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, shard_examples(y))
    correct = jnp.sum(jnp.argmax(logits, axis=-1) == y)
    return jnp.sum(losses), correct


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
    are static, so this function is jit-able and differentiable in `params`.
    """
    check_bn_policy(bn_policy)
    n = x_uint8.shape[0]
    chunk = n if bn_policy == "full" else min(chunk_size, n)
    n_chunks, remainder = divmod(n, chunk)

    def body(carry, xy):
        loss_sum, correct = chunk_sums(model, params, batch_stats, *xy, bn_policy)
        return (carry[0] + loss_sum, carry[1] + correct), None

    head = n_chunks * chunk
    xs = x_uint8[:head].reshape((n_chunks, chunk, *x_uint8.shape[1:]))
    ys = y[:head].reshape((n_chunks, chunk))
    zero = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
    (loss_sum, correct), _ = jax.lax.scan(body, zero, (xs, ys))
    if remainder:
        tail_loss, tail_correct = chunk_sums(
            model, params, batch_stats, x_uint8[head:], y[head:], bn_policy
        )
        loss_sum, correct = loss_sum + tail_loss, correct + tail_correct
    return loss_sum / n, correct / n


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
    """
    check_bn_policy(bn_policy)
    x_dev, y_dev = replicate(x_uint8), replicate(np.asarray(y, np.int32))

    @jax.jit
    def loss_fn(params):
        loss, _ = split_metrics(
            model, params, batch_stats, x_dev, y_dev, bn_policy=bn_policy, chunk_size=chunk_size
        )
        return loss

    return loss_fn
