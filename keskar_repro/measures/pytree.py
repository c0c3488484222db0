"""The pytree a measurement perturbs: which leaves move, as one flat vector, and back; layer masks.

Every measurement (keskar_repro.measures.sharpness, keskar_repro.measures.notions) takes
`loss_fn(params) -> scalar` and a pytree `params`, and perturbs x = the selected floating-point
entries of params, concatenated in `jax.tree_util.tree_leaves` order. `partition(params, mask)`
decides, once per call, what each leaf is:

- perturbed: a floating leaf of any float dtype (float16, bfloat16, float32, float64) that the
  mask selects;
- masked:    a floating leaf the mask does not select, held fixed;
- fixed:     any other leaf (integers, bools, complex numbers, PRNG key arrays -- e.g. the step
             counters and RNG keys of a Flax NNX state), held fixed whatever the mask says.

Held leaves reach loss_fn unchanged (as JAX arrays); the counts of each kind are a `LeafCounts`.

Dtype. The flat vector x has the widest floating dtype among the perturbed leaves, and at least
float32: `jnp.promote_types(jnp.result_type(*dtypes), float32)`, dtypes as JAX holds them (float64
is float32 without jax_enable_x64). For float32 and float64 leaves that is the dtype of
`jax.flatten_util.ravel_pytree` and the same concatenation, so the numbers are the same as with
it; float16 and bfloat16 leaves are perturbed in float32. Each piece of x + delta is cast back to
its leaf's dtype before loss_fn sees it, so a bfloat16 leaf sees x + delta rounded to bfloat16
(8 significant bits: a change below ~2^-9 |x_i| rounds away), and the gradient in x of a
low-precision leaf is its low-precision gradient, upcast.

Masks. `mask` is None (every floating leaf), a pytree of Python/NumPy bools with the structure
of params or a prefix of it (`{"Dense_0": True, "Dense_1": False}` covers every leaf under each
key), or a callable `mask(path) -> bool` on each leaf's path string (`leaf_path`, e.g.
"Dense_0/kernel"). `layer_masks(params)` gives one mask per layer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "LeafCounts",
    "Partition",
    "partition",
    "is_floating",
    "has_floating",
    "leaf_path",
    "layer_masks",
]

Mask = Any  # None | a pytree (prefix) of bools | Callable[[str], bool]


def leaf_path(keypath: tuple) -> str:
    """A key path as a string, its keys joined by "/": ("Dense_0", "kernel") -> "Dense_0/kernel"
    (the root itself, a bare array, is "")."""
    return jax.tree_util.keystr(tuple(keypath), simple=True, separator="/")


def is_floating(leaf: Any) -> bool:
    """Whether `leaf` (an array or a Python scalar) has a floating dtype, bfloat16 included."""
    dtype = getattr(leaf, "dtype", None)
    dtype = np.result_type(leaf) if dtype is None else dtype  # Python scalars
    return bool(jnp.issubdtype(dtype, jnp.floating))


def _mask_flags(mask: Mask, params: Any, paths: list[str]) -> list[bool]:
    """One bool per leaf of params: is it selected by `mask`?"""
    if mask is None:
        return [True] * len(paths)
    if callable(mask):
        return [bool(mask(path)) for path in paths]

    def expand(flag: Any, subtree: Any) -> list[bool]:
        if not isinstance(flag, bool | np.bool_):
            raise ValueError(f"mask leaves must be bools, found {type(flag).__name__}")
        return [bool(flag)] * len(jax.tree_util.tree_leaves(subtree))

    try:
        expanded = jax.tree_util.tree_map(expand, mask, params)
    except (TypeError, ValueError) as err:
        raise ValueError(f"mask must be a prefix of params' structure of bools: {err}") from err
    return jax.tree_util.tree_leaves(expanded)


@dataclasses.dataclass(frozen=True)
class LeafCounts:
    """How `partition` split a pytree: leaves (arrays) and entries (scalars) of each kind.

    perturbed_*      floating leaves the mask selects: the entries of x.
    masked_*         floating leaves the mask leaves out, held fixed.
    fixed_*          non-floating leaves (integers, bools, PRNG keys, ...), always held fixed.
    perturbed_paths  the perturbed leaves' `leaf_path`s when a mask was given, else None (all
                     floating leaves).
    """

    perturbed_leaves: int
    perturbed_entries: int
    masked_leaves: int
    masked_entries: int
    fixed_leaves: int
    fixed_entries: int
    perturbed_paths: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The counts, JSON-ready."""
        out = dataclasses.asdict(self)
        if self.perturbed_paths is not None:
            out["perturbed_paths"] = list(self.perturbed_paths)
        return out


@dataclasses.dataclass(frozen=True)
class Partition:
    """Which leaves of a pytree are perturbed, their shapes and dtypes, and the flat vector's
    dtype; hashable, so it can be a static argument of `jax.jit` (the counts do not enter the
    hash). The one place the package flattens a pytree into the vector it measures and back.

    perturbed  one bool per leaf, in `tree_leaves` order.
    dtype      the name of the flat vector's dtype ("float32" or "float64").
    counts     the `LeafCounts` of the pytree it was made from.
    treedef    the pytree's structure.
    shapes     the shapes of the perturbed leaves, in order.
    dtypes     the names of their dtypes as JAX holds them.
    """

    perturbed: tuple[bool, ...]
    dtype: str
    counts: LeafCounts = dataclasses.field(compare=False)
    treedef: Any = None
    shapes: tuple[tuple[int, ...], ...] = ()
    dtypes: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        """The number of perturbed entries, the length of x."""
        return self.counts.perturbed_entries

    def split(self, tree: Any) -> tuple[list, list]:
        """(perturbed leaves, held leaves) of a pytree with this structure, each in leaf order."""
        leaves = jax.tree_util.tree_leaves(tree)
        if len(leaves) != len(self.perturbed):
            raise ValueError(f"params has {len(leaves)} leaves, not {len(self.perturbed)}")
        var = [leaf for leaf, p in zip(leaves, self.perturbed, strict=True) if p]
        held = [leaf for leaf, p in zip(leaves, self.perturbed, strict=True) if not p]
        return var, held

    def merge(self, var: list, held: list) -> Any:
        """The pytree from its perturbed and held leaves (the inverse of `split`)."""
        var_it, held_it = iter(var), iter(held)
        leaves = [next(var_it) if p else next(held_it) for p in self.perturbed]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def ravel(self, var: list) -> jax.Array:
        """Perturbed leaves -> one flat vector in `dtype`."""
        return jnp.concatenate([jnp.ravel(jnp.asarray(leaf).astype(self.dtype)) for leaf in var])

    def unravel(self, flat: jax.Array) -> list:
        """One flat vector -> the perturbed leaves, each in its own shape and dtype."""
        sizes = [math.prod(shape) for shape in self.shapes]
        pieces = jnp.split(flat, np.cumsum(sizes)[:-1].tolist())
        triples = zip(pieces, self.shapes, self.dtypes, strict=True)
        return [piece.reshape(shape).astype(dtype) for piece, shape, dtype in triples]

    def flatten(self, params: Any) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
        """(x, unflatten): x the perturbed entries as one flat vector in `dtype`; unflatten(v)
        is params with the perturbed leaves replaced by v's pieces, each cast to its leaf's dtype,
        and every other leaf as it is. Works inside a trace (params may be tracers)."""
        var, held = self.split(params)
        return self.ravel(var), lambda v: self.merge(self.unravel(v), held)

    def perturbation(self, vector: Any, params: Any) -> Any:
        """The flat `vector` (length n) as a pytree of NumPy arrays like params, on the host: each
        perturbed leaf its piece in the leaf's dtype; each held leaf zeros of its shape and dtype
        (uint32 zeros for a PRNG key leaf, whose dtype has no zero)."""
        leaves, treedef = jax.tree_util.tree_flatten(params)
        vector = np.asarray(jax.device_get(vector))
        sizes = [int(np.size(leaf)) for leaf, p in zip(leaves, self.perturbed, strict=True) if p]
        pieces = iter(np.split(vector, np.cumsum(sizes)[:-1]))
        out = [
            next(pieces).reshape(np.shape(leaf)).astype(_numpy_dtype(leaf), copy=False)
            if p
            else np.zeros(np.shape(leaf), _numpy_dtype(leaf))
            for leaf, p in zip(leaves, self.perturbed, strict=True)
        ]
        return jax.tree_util.tree_unflatten(treedef, out)


def _numpy_dtype(leaf: Any) -> np.dtype:
    dtype = getattr(leaf, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.extended):
        return np.dtype(np.uint32)  # PRNG keys
    return np.dtype(dtype) if dtype is not None else np.result_type(leaf)


def _counts(kinds: list[str], sizes: list[int], paths: list[str], masked: bool) -> LeafCounts:
    def count(kind: str) -> dict[str, int]:
        entries = sum(n for n, k in zip(sizes, kinds, strict=True) if k == kind)
        return {f"{kind}_leaves": kinds.count(kind), f"{kind}_entries": entries}

    chosen = tuple(path for path, k in zip(paths, kinds, strict=True) if k == "perturbed")
    return LeafCounts(
        **count("perturbed"), **count("masked"), **count("fixed"),
        perturbed_paths=chosen if masked else None,
    )  # fmt: skip


def partition(params: Any, mask: Mask = None) -> Partition:
    """The `Partition` of params under `mask` (see the module docstring for the rules).

    Raises ValueError (naming params or mask) for: no perturbed entry (no floating leaf, all
    empty, or none selected), a mask that is not a prefix of params of bools.
    """
    with_paths, _ = jax.tree_util.tree_flatten_with_path(params)
    paths = [leaf_path(path) for path, _ in with_paths]
    leaves = [leaf for _, leaf in with_paths]
    selected = _mask_flags(mask, params, paths)
    kinds = [
        ("perturbed" if chosen else "masked") if is_floating(leaf) else "fixed"
        for leaf, chosen in zip(leaves, selected, strict=True)
    ]
    sizes = [math.prod(np.shape(leaf)) for leaf in leaves]
    counts = _counts(kinds, sizes, paths, mask is not None)
    if counts.perturbed_entries == 0:
        what = "selected by mask" if mask is not None else "in params"
        raise ValueError(f"params has no floating-point entries to perturb ({what})")
    perturbed = tuple(kind == "perturbed" for kind in kinds)
    dtypes = [jax.dtypes.canonicalize_dtype(_numpy_dtype(leaf))
              for leaf, p in zip(leaves, perturbed, strict=True) if p]  # fmt: skip
    dtype = jnp.promote_types(jnp.result_type(*dtypes), jnp.float32)
    chosen = [leaf for leaf, p in zip(leaves, perturbed, strict=True) if p]
    shapes = tuple(tuple(np.shape(leaf)) for leaf in chosen)
    leaf_dtypes = tuple(np.dtype(jnp.result_type(leaf)).name for leaf in chosen)
    treedef = jax.tree_util.tree_structure(params)
    return Partition(perturbed, np.dtype(dtype).name, counts, treedef, shapes, leaf_dtypes)


def has_floating(params: Any, mask: Mask) -> bool:
    """Whether `mask` selects a non-empty floating leaf of params."""
    leaves = jax.tree_util.tree_leaves(params)
    pairs = zip(leaves, jax.tree_util.tree_leaves(mask), strict=True)
    return any(m and is_floating(leaf) and np.size(leaf) for leaf, m in pairs)


def layer_masks(params: Any, depth: int = 1) -> dict[str, Any]:
    """One mask per layer: {name: pytree of bools like params, True on that layer's leaves}.

    A layer is the leaves whose paths share their first `depth` keys, named by those keys
    joined by "/" (`leaf_path`): for a Flax params dict, depth=1 gives one mask per module
    ("Dense_0", "BatchNorm_0", ...); for a {"params": ..., "batch_stats": ...} variables dict use
    depth=2 ("params/Dense_0", ...). Ordered as the leaves are.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [leaf_path(path[:depth]) for path, _ in with_paths]
    return {
        name: jax.tree_util.tree_unflatten(treedef, [n == name for n in names])
        for name in dict.fromkeys(names)
    }
