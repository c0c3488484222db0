"""Data parallelism over all devices with jax.sharding: batch axes split, the rest replicated.

One 1-D mesh over `jax.devices()` with the axis "data". Inside the compiled programs, every
minibatch (training) and every chunk (objective, evaluation, parametric paths) is constrained
to be split along its example axis across the mesh; parameters, optimizer state and the dataset
itself are replicated (F1 has 1.5 M parameters and MNIST is 47 MB of uint8: both fit on every
device). XLA's SPMD partitioner then runs each device on its share of the examples and inserts
the all-reduces: batch-norm statistics and the gradient are sums over the whole batch, so the
result equals the one-device computation up to float summation order. On one device every
function here is the identity, and nothing changes.

An axis whose length is not a multiple of the device count (e.g. mnist10k's SB batch 34 on 4
devices) stays replicated: correct, only not parallel.

Several processes (hosts): after `keskar_repro.devices.distributed.initialize_from_env()` (the
scripts call it) `jax.devices()` lists every process's devices and the mesh spans them all. Every
process holds the whole dataset, so `replicate` places each process's own copy on its local
devices (`jax.device_put` of a host array onto a replicated global sharding; JAX takes each
process's value as that process's shards); outputs that are replicated read back on every
process with `np.asarray`. tests/test_distributed.py checks 2 processes x 2 devices against
1 x 4; the README's "Several hosts" gives the commands.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"


@functools.cache
def data_mesh() -> Mesh | None:
    """The mesh over all devices, or None with a single device (no sharding at all)."""
    devices = jax.devices()
    if len(devices) == 1:
        return None
    return Mesh(np.asarray(devices), (AXIS,))


def device_count() -> int:
    mesh = data_mesh()
    return 1 if mesh is None else mesh.size


def replicate(x: Any) -> jax.Array:
    """`x` as an array on every device of the mesh (or on the one device)."""
    mesh = data_mesh()
    if mesh is None:
        return jax.device_put(np.asarray(x))
    return jax.device_put(np.asarray(x), NamedSharding(mesh, PartitionSpec()))


def shard_examples(x: jax.Array) -> jax.Array:
    """Inside jit: constrain `x` to be split along its first (example) axis over the mesh.

    The identity with one device, or when x.shape[0] is not a multiple of the device count."""
    mesh = data_mesh()
    if mesh is None or x.ndim == 0 or x.shape[0] % mesh.size:
        return x
    spec = PartitionSpec(AXIS, *([None] * (x.ndim - 1)))
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
