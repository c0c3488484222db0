"""Compiled evaluation of f(x + A (h * z)) and its gradient, the device solver loops, and the
cache of both per loss_fn.

Every compiled function takes the loss's `data` as an argument (None for `loss_fn(params)`;
see keskar_repro.measures.checks.WithData), so one compilation per loss_fn serves every dataset
of the same shapes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from keskar_repro.measures.checks import call
from keskar_repro.measures.pytree import Partition
from keskar_repro.measures.subspace import _HIGHEST

LBFGSB_MAXCOR = 10  # SciPy's default number of stored corrections (m)
LBFGSB_MAXLS = 20  # SciPy's default maximum number of line-search steps per iteration

# --------------------------------------------------------------------------------------------
# Compiled evaluation of f(x + A (h * z)) and its gradient in z
# --------------------------------------------------------------------------------------------


def _delta_flat(z: jax.Array, h: jax.Array | None, a: jax.Array | None) -> jax.Array:
    y = z if h is None else h * z
    return y if a is None else jnp.matmul(a, y, precision=_HIGHEST)


def _value_and_grad_z(
    loss_fn: Callable,
    z: jax.Array,
    params: Any,
    data: Any,
    h: jax.Array | None,
    a: jax.Array | None,
    *,
    part: Partition,
) -> tuple[jax.Array, jax.Array]:
    """f(x + A (h * z)) and its gradient in z (h = None: z is y; a = None: A = I), x the entries
    of params that `part` perturbs."""
    x_flat, unravel = part.flatten(params)
    point = x_flat + _delta_flat(z, h, a)
    value, g = jax.value_and_grad(lambda v: call(loss_fn, unravel(v), data))(point)
    if a is not None:
        g = jnp.matmul(g, a, precision=_HIGHEST)
    if h is not None:
        g = h * g
    return value, g


def _pga_loop(
    loss_fn: Callable,
    params: Any,
    data: Any,
    h: jax.Array,
    a: jax.Array | None,
    v0: jax.Array,
    g0: jax.Array,
    maxiter: jax.Array,
    step: jax.Array,
    *,
    part: Partition,
) -> tuple[jax.Array, ...]:
    """`maxiter` steps u <- clip(u + step * sign(grad), -1, 1) from u = 0, keeping the best u."""

    def body(i, carry):
        u, g, v, best_u, best_v, best_i = carry
        u = jnp.clip(u + step * jnp.sign(g), -1.0, 1.0)
        v, g = _value_and_grad_z(loss_fn, u, params, data, h, a, part=part)
        better = v > best_v
        best_u = jnp.where(better, u, best_u)
        best_v = jnp.where(better, v, best_v)
        best_i = jnp.where(better, i + 1, best_i)
        return u, g, v, best_u, best_v, best_i

    u0 = jnp.zeros_like(g0)
    init = (u0, g0, v0, u0, v0, jnp.zeros((), jnp.int32))
    _, _, v_last, best_u, best_v, best_i = jax.lax.fori_loop(0, maxiter, body, init)
    return best_u, best_v, best_i, v_last


def _device_lbfgsb(
    loss_fn: Callable,
    params: Any,
    data: Any,
    h: jax.Array,
    a: jax.Array | None,
    f0: jax.Array,
    scale: jax.Array,
    *,
    maxiter: int,
    part: Partition,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """`maxiter` iterations of jaxopt's L-BFGS-B on F(u) = -(f(x + A (h * u)) - f0) / scale over
    u in [-1, 1]^p from u = 0, all on the device (one compiled while-loop). Returns (u, F(u),
    iterations, function evaluations). jaxopt is no longer developed (its import says so); its
    LBFGSB is used as released (tested: jaxopt 0.8.5 with JAX 0.10)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import jaxopt

    def objective(u):
        value, grad = _value_and_grad_z(loss_fn, u, params, data, h, a, part=part)
        return -(value - f0) / scale, -grad / scale

    solver = jaxopt.LBFGSB(
        fun=objective,
        value_and_grad=True,
        maxiter=maxiter,
        tol=0.0,
        history_size=LBFGSB_MAXCOR,
        maxls=LBFGSB_MAXLS,
        implicit_diff=False,
        jit=True,
    )
    u0 = jnp.zeros_like(h)
    result = solver.run(u0, bounds=(-jnp.ones_like(h), jnp.ones_like(h)))
    return result.params, result.state.value, result.state.iter_num, result.state.num_fun_eval


class _Compiled:
    """The jit-compiled functions for one loss_fn; compiled once per input shape and partition
    (a static argument), then reused."""

    def __init__(self, loss_fn: Callable):
        static = ("part",)
        self.value_and_grad = jax.jit(partial(_value_and_grad_z, loss_fn), static_argnames=static)
        self.pga = jax.jit(partial(_pga_loop, loss_fn), static_argnames=static)
        self.device_lbfgsb = jax.jit(
            partial(_device_lbfgsb, loss_fn), static_argnames=("maxiter", *static)
        )


_COMPILED: OrderedDict[Any, _Compiled] = OrderedDict()
_COMPILED_MAX = 8
_delta_jit = jax.jit(_delta_flat)


def _compiled(loss_fn: Callable) -> _Compiled:
    """The compiled functions of `loss_fn`, from a small LRU cache keyed by the loss_fn object.

    The cache holds (strong references to) the last 8 loss functions, so repeated sharpness
    calls on the same loss_fn compile once; `clear_compiled_cache()` empties it.
    """
    try:
        entry = _COMPILED.pop(loss_fn)
    except KeyError:
        entry = _Compiled(loss_fn)
    except TypeError:  # unhashable callable: compile for this call only
        return _Compiled(loss_fn)
    _COMPILED[loss_fn] = entry
    while len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return entry


def clear_compiled_cache() -> None:
    """Forget the compiled evaluation functions (and the loss functions they reference)."""
    _COMPILED.clear()
