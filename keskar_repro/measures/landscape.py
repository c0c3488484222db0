"""Loss landscapes around a point: filter-normalised random directions and 1-D and 2-D grids.

A 2-D surface (Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the loss landscape of
neural nets") is fn(x + a d1 + b d2) on a grid of (a, b), for two random directions d1, d2 with
the pytree structure of x = params. Raw Gaussian directions make the picture depend on the
scale of each layer (a ReLU layer scaled by c and the next by 1/c is the same function, yet its
surface would stretch), so each direction is normalised filter-wise
(`filter_normalized_direction`): for every leaf of two or more dimensions (a Dense or conv
kernel in Flax's layout, the output units on the last axis) and every output unit j,

    d[..., j] <- d[..., j] * ||x[..., j]|| / ||d[..., j]||        (Frobenius norms over the slice)

so each unit's weights move in proportion to their own size. Leaves of one dimension (biases,
batch norm's scale and offset) are zero in the direction by default, as in Li et al.'s
"ignore biasbn"; with include_vectors=True they are set to the parameter itself (Li et al.'s
choice for them). Non-floating leaves are held fixed (zero direction, `pytree.partition`).

`grid_values(fn, params, directions, coefficients)` evaluates fn at x + sum_k c_k d_k for each
row c of `coefficients` (P points, one coefficient per direction, so 1-D slices and 2-D grids
are the same call) in one jit-compiled program: a `lax.map` over the points, `points_per_call`
of them vmapped together, fn returning a scalar or a dict of scalars (e.g. the training loss
and the test accuracy). fn(params) or, with `data`, fn(params, data): the data is then an
argument of the compiled program, so one compilation serves every point set of one size.
`surface` lays a 2-D grid out row by row, evaluates only the points a partial result does not
yet have, and hands each finished row to `on_row` (for progress and saving), so an interrupted
surface resumes. Nothing here imports the package's model, data or training code.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from keskar_repro.measures.checks import call, check_int, check_key, split_data, with_data
from keskar_repro.measures.pytree import partition

__all__ = ["filter_normalized_direction", "grid_values", "surface"]


def filter_normalized_direction(key: Any, params: Any, *, include_vectors: bool = False) -> Any:
    """A Gaussian direction with params' structure, normalised filter-wise (module docstring).

    Leaves of >= 2 dimensions: N(0, 1) entries, each slice along the last axis (an output
    unit) rescaled to the Frobenius norm of params' slice (a zero slice stays zero). Leaves of
    0 or 1 dimensions: zero, or params itself with include_vectors=True. Non-floating leaves:
    zero of their dtype. Each leaf draws from fold_in(key, its index in tree_leaves order).
    """
    key = check_key(key, "filter_normalized_direction")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    floating = partition(params).perturbed
    out = []
    for i, (leaf, var) in enumerate(zip(leaves, floating, strict=True)):
        x = jnp.asarray(leaf)
        if not var:
            out.append(jnp.zeros_like(x))
        elif x.ndim < 2:
            out.append(x if include_vectors else jnp.zeros_like(x))
        else:
            d = jax.random.normal(jax.random.fold_in(key, i), x.shape, jnp.float32)
            axes = tuple(range(x.ndim - 1))
            x_norm = jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=axes))
            d_norm = jnp.sqrt(jnp.sum(jnp.square(d), axis=axes))
            out.append((d * (x_norm / jnp.where(d_norm > 0, d_norm, 1.0))).astype(x.dtype))
    return jax.tree_util.tree_unflatten(treedef, out)


@partial(jax.jit, static_argnames=("fn", "part", "points_per_call"))
def _grid(var, held, directions, coefficients, data, *, fn, part, points_per_call: int):
    def at(c):
        moved = [
            x + sum(ck.astype(x.dtype) * d[i] for ck, d in zip(c, directions, strict=True))
            for i, x in enumerate(var)
        ]
        return call(fn, part.merge(moved, held), data)

    return jax.lax.map(at, coefficients, batch_size=points_per_call)


def _check_directions(params: Any, directions: Any) -> tuple:
    if not isinstance(directions, list | tuple) or not directions:
        raise ValueError("directions must be a non-empty list of pytrees shaped like params")
    want = jax.tree_util.tree_structure(params)
    shapes = [np.shape(a) for a in jax.tree_util.tree_leaves(params)]
    for i, d in enumerate(directions):
        got = jax.tree_util.tree_structure(d)
        if got != want or [np.shape(a) for a in jax.tree_util.tree_leaves(d)] != shapes:
            raise ValueError(
                f"directions[{i}] must have params' structure and leaf shapes; got {got}, "
                f"want {want}"
            )
    return tuple(directions)


def grid_values(
    fn: Callable[..., Any],
    params: Any,
    directions: list,
    coefficients: Any,
    *,
    data: Any = None,
    points_per_call: int = 1,
) -> dict[str, np.ndarray] | np.ndarray:
    """fn(params + sum_k c_k directions[k]) for every row c of `coefficients` ((P, K) for K
    directions), in one compiled call (module docstring). Returns a (P,) float64 array, or a
    dict of them when fn returns a dict. Non-floating leaves of params are left as they are
    (their directions are ignored). Errors (ValueError): directions of another structure or
    shape, coefficients that are not a (P >= 1, K) array of finite numbers, points_per_call < 1.
    """
    directions = _check_directions(params, directions)
    c = np.asarray(coefficients, np.float64)
    if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] != len(directions):
        raise ValueError(
            f"coefficients must be a (points >= 1, {len(directions)}) array, one column per "
            f"direction; got shape {c.shape}"
        )
    if not np.all(np.isfinite(c)):
        raise ValueError("coefficients must be finite")
    points_per_call = check_int("points_per_call", points_per_call, 1)
    part = partition(params)
    var, held = part.split(params)
    var_directions = [part.split(d)[0] for d in directions]
    f, data = split_data(with_data(fn, data))
    out = _grid(var, held, var_directions, jnp.asarray(c, jnp.float32), data, fn=f, part=part,
                points_per_call=points_per_call)  # fmt: skip
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), jax.device_get(out))


def surface(
    fn: Callable[..., Any],
    params: Any,
    d1: Any,
    d2: Any,
    alphas: Any,
    betas: Any,
    *,
    data: Any = None,
    partial_result: dict[str, np.ndarray] | None = None,
    on_row: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    points_per_call: int = 1,
) -> dict[str, np.ndarray]:
    """fn(params + a d1 + b d2) on the grid alphas x betas: {name: (len(alphas), len(betas))
    float64 array} (name "value" when fn returns a scalar), row i at alpha_i.

    Rows already complete (no NaN) in `partial_result` (an earlier, interrupted result of the
    same grid) are kept, and only the others evaluated, one compiled call per row; after each
    row `on_row(i, result so far)` is called. Errors (ValueError): an empty grid, non-finite
    or non-1-D alphas or betas, a partial result of another shape, and those of `grid_values`.
    """
    a, b = (np.asarray(v, np.float64) for v in (alphas, betas))
    for name, v in (("alphas", a), ("betas", b)):
        if v.ndim != 1 or v.size < 1 or not np.all(np.isfinite(v)):
            raise ValueError(f"{name} must be a non-empty 1-D array of finite numbers")
    result = {k: np.array(v, np.float64) for k, v in (partial_result or {}).items()}
    for name, v in result.items():
        if v.shape != (a.size, b.size):
            raise ValueError(
                f"partial_result[{name!r}] has shape {v.shape}, not the grid's "
                f"{(a.size, b.size)}: it belongs to another grid"
            )
    for i, alpha in enumerate(a):
        if result and all(np.all(np.isfinite(v[i])) for v in result.values()):
            continue
        coefficients = np.stack([np.full_like(b, alpha), b], axis=1)
        row = grid_values(fn, params, [d1, d2], coefficients, data=data,
                          points_per_call=points_per_call)  # fmt: skip
        row = row if isinstance(row, dict) else {"value": row}
        for name, values in row.items():
            result.setdefault(name, np.full((a.size, b.size), np.nan))[i] = values
        if on_row is not None:
            on_row(i, result)
    return result
