"""Argument checks, keys, the loss's data argument and JSON conversion shared by the measurement
modules: each check returns the checked value or raises a ValueError that names the argument, so
a research user's mistake reads as one line about their own call. Imports JAX only inside the
functions that need it (keskar_repro.measures.options uses the plain checks without JAX)."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {choices}")


def check_positive(name: str, value: Any, *, zero: bool = False) -> float:
    """`value` as a float; ValueError naming it unless finite and > 0 (>= 0 where zero=True)."""
    what = "a non-negative" if zero else "a positive"
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be {what} finite number, got {value!r}") from err
    if not (math.isfinite(number) and (number > 0.0 or (zero and number == 0.0))):
        raise ValueError(f"{name} must be {what} finite number, got {value!r}")
    return number


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """`value` as an int in [low, high] (no upper bound where high is None); bools rejected."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def check_loss_fn(loss_fn: Any, params: Any, *, hashable: bool = False) -> np.dtype:
    """The dtype of loss_fn(params), which must be a floating-point scalar; traced abstractly
    (`jax.eval_shape`), nothing computed. With hashable=True, loss_fn must also be hashable
    (a static argument of compiled functions)."""
    import jax
    import jax.numpy as jnp

    loss_fn, data = split_data(loss_fn)
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if hashable:
        try:
            hash(loss_fn)
        except TypeError as err:
            raise ValueError("loss_fn must be hashable (wrap it in a function)") from err
    try:
        out = jax.eval_shape(lambda p, d: call(loss_fn, p, d), params, data)
    except Exception as err:  # a loss that JAX cannot trace is the caller's argument error
        raise ValueError(f"loss_fn(params) could not be traced by JAX: {err}") from err
    shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
    if shape != () or dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            "loss_fn must return a floating-point scalar (shape ()), got "
            f"{out if shape is None else f'shape {shape}, dtype {dtype}'}"
        )
    return np.dtype(dtype)


def jsonable(value: Any) -> Any:
    """`value` in JSON's types: NumPy scalars and arrays as Python numbers and lists, tuples as
    lists, non-finite floats as strings ("nan", "inf"), objects with `to_dict()` as its dict."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist()) if value.ndim else jsonable(value.item())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def check_key(key: Any, needed_by: str = "this measurement") -> Any:
    """A JAX PRNG key: `key` itself if it is one (typed, `jax.random.key`, or raw uint32[2],
    `jax.random.PRNGKey`), `jax.random.key(key)` for an int seed; ValueError naming `key` for
    None or anything else."""
    import jax

    if key is None:
        raise ValueError(f"key is required by {needed_by}: pass a jax.random.key or an int seed")
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        return jax.random.key(int(key))
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return key
    if dtype == np.uint32 and np.shape(key) == (2,):
        return key
    raise ValueError(f"key must be a jax.random.key or an int seed, got {key!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class WithData:
    """`loss_fn(params, data)` with its data: every measurement evaluates `fn(params, data)`,
    compiling for `fn` (the cache key) with the data as an argument of the compiled program, so
    one compilation serves every call with data of the same shapes."""

    fn: Callable
    data: Any

    def __call__(self, params: Any) -> Any:
        """fn(params, data), compiled (one compilation per fn and shapes)."""
        try:
            compiled = _jitted(self.fn)
        except TypeError:  # an unhashable callable: compiled for this call only
            import jax

            compiled = jax.jit(self.fn)
        return compiled(params, self.data)


@functools.lru_cache(maxsize=16)
def _jitted(fn: Callable) -> Callable:
    """`jax.jit(fn)`, one wrapper per function (the last 16 kept)."""
    import jax

    return jax.jit(fn)


def with_data(loss_fn: Callable, data: Any) -> Callable:
    """loss_fn as it is for data=None, else `WithData(loss_fn, data)`."""
    return loss_fn if data is None else WithData(loss_fn, data)


def split_data(loss_fn: Callable) -> tuple[Callable, Any]:
    """(the function to compile, its data or None)."""
    return (loss_fn.fn, loss_fn.data) if isinstance(loss_fn, WithData) else (loss_fn, None)


def call(fn: Callable, params: Any, data: Any) -> Any:
    """fn(params), or fn(params, data) when data is not None (inside compiled programs)."""
    return fn(params) if data is None else fn(params, data)
