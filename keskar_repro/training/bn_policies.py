"""Batch-norm policies: which statistics normalise the network when a loss is evaluated.

A batch-normalised network's output depends on the statistics that normalise it, so every
evaluation of the objective, of the accuracy or of a path names its policy. This module is the
only list of them (the scripts' --bn-policy choices come from `BN_POLICIES`):

- "batch":   each fixed chunk of `chunk_size` consecutive examples is normalised with its own
             batch statistics (the authors' Keras 1 code, BN mode=2, evaluated in batches of
             5000); the last, smaller chunk uses its own statistics too.
- "full":    the whole split is one batch: statistics over all N examples.
- "running": the running averages stored during training (standard "eval mode"); chunking then
             only bounds memory and does not change the value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # no JAX at import: the scripts' --replot reads BN_POLICIES without it
    import jax

BN_POLICIES: tuple[str, ...] = ("batch", "full", "running")
DEFAULT_BN_POLICY = "batch"
DEFAULT_CHUNK_SIZE = 5000  # examples per chunk: the batch of the "batch" policy


def check_bn_policy(bn_policy: str) -> None:
    """Raise a ValueError naming `bn_policy` unless it is one of BN_POLICIES."""
    if bn_policy not in BN_POLICIES:
        raise ValueError(f"bn_policy={bn_policy!r} is not one of {BN_POLICIES}")


def chunk_length(n: int, bn_policy: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Examples per chunk for a split of `n` examples: the whole split under "full", else
    `chunk_size` (at most n)."""
    check_bn_policy(bn_policy)
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be a positive number of examples")
    return n if bn_policy == "full" else min(chunk_size, n)


def apply_model(model, variables: dict[str, Any], x: jax.Array, bn_policy: str) -> jax.Array:
    """Logits of `model` on the chunk `x` under `bn_policy`: the stored running averages for
    "running", the chunk's own batch statistics otherwise (the updated averages are dropped)."""
    if bn_policy == "running":
        return model.apply(variables, x, use_running_average=True)
    logits, _ = model.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    return logits
