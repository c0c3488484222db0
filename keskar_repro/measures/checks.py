"""Argument checks and JSON conversion shared by the measurement modules (sharpness, notions,
curvature): each check returns the checked value or raises a ValueError that names the argument,
so a research user's mistake reads as one line about their own call."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
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
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if hashable:
        try:
            hash(loss_fn)
        except TypeError as err:
            raise ValueError("loss_fn must be hashable (wrap it in a function)") from err
    try:
        out = jax.eval_shape(loss_fn, params)
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
