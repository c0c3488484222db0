"""Sharpness notions beside Metric 2.1: adaptive worst case, average case, and per-layer versions.

Every notion takes `loss_fn(params) -> scalar` and a pytree `params` as
keskar_repro.measures.sharpness does, perturbs the same entries x (the floating leaves, of any float
dtype, that an optional `mask` selects; every other leaf held fixed, see
keskar_repro.measures.pytree) and reports in Metric 2.1's units, percent of 1 + f(x):

    value = 100 * rise / (1 + f(x)),

so that its numbers compare with `sharpness`'s (the raw rise, in loss units, is in each record).

Adaptive worst case (`adaptive_sharpness`; Andriushchenko et al. 2023, "A modern look at the
relationship between sharpness and generalization", with ASAM's offset eta, Kwon et al. 2021):

    rise = max_{|delta_i| <= eps (|x_i| + eta)} f(x + delta) - f(x),

the l_inf ball of radius eps on delta / (|x| + eta), chosen to match Metric 2.1's box (the paper
also studies l_2; not implemented). It is Metric 2.1's full-space box with the "+1" replaced by
eta, built by `sharpness_problem(..., eta=eta)` and maximised by the same solvers
(`sharpness.SOLVERS`, through `maximize`: 10 iterations of L-BFGS-B by default). eta = 0
(default) is Andriushchenko et al.'s definition; ASAM uses eta = 0.01; eta = 1 is Metric 2.1
itself. With eta = 0 the value is invariant under the elementwise rescalings that leave the
function unchanged: for f(x) = g(c * x) (c without zeros) it is the same at x / c for f as at x
for g, because the box maps onto itself (and, with the normalised scaling, so do the solver's
iterates); for a ReLU network, (c W1, W2 / c) is such a rescaling. Metric 2.1 is not invariant.
An entry with x_i = 0 has a zero half-width at eta = 0 and is not perturbed.

Average case (`average_sharpness`):

    rise = E_delta [ f(x + delta) ] - f(x),   delta_i ~ N(0, s_i^2) independent,
    s_i = eps (default)  or  s_i = eps (|x_i| + eta) (adaptive=True),

estimated by Monte Carlo over `samples` independent draws with its standard error
std(rise_j) / sqrt(samples). By default the draws are antithetic pairs, rise_j = (f(x + d_j) +
f(x - d_j)) / 2 - f(x): the same expectation (d and -d have the same law), but the first-order
term, whose noise (variance eps^2 |grad f|^2 per draw) dominates away from a minimum, cancels
exactly; it costs two evaluations per draw. For f = sum_i h_i x_i^2 / 2 the rise is exactly
eps^2 sum_i h_i / 2 (adaptive, eta = 0: eps^2 sum_i h_i x_i^2 / 2).

Per layer: every notion (and `sharpness`) takes `mask`; `layer_masks(params)` gives one mask per
layer and `per_layer` measures each layer in turn.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from keskar_repro.measures.checks import (
    call,
    check_int,
    check_key,
    check_loss_fn,
    check_positive,
    jsonable,
    split_data,
    with_data,
)
from keskar_repro.measures.options import SolverOptions, solver_options
from keskar_repro.measures.pytree import (
    LeafCounts,
    Mask,
    Partition,
    has_floating,
    layer_masks,
    partition,
)
from keskar_repro.measures.sharpness import SharpnessResult, maximize, sharpness_problem

__all__ = [
    "AdaptiveSharpnessResult",
    "AverageSharpnessResult",
    "adaptive_sharpness",
    "average_sharpness",
    "per_layer",
    "layer_masks",
]


def _percent(rise: float, f0: float) -> float:
    """Metric 2.1's normalisation: 100 * rise / (1 + f0)."""
    return 100.0 * rise / (1.0 + f0)


def _record_dict(record: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out = {"notion": record.notion}
    for field in dataclasses.fields(record):
        if field.name not in skip:
            value = getattr(record, field.name)
            out[field.name] = value.to_dict() if hasattr(value, "to_dict") else jsonable(value)
    return out


# --------------------------------------------------------------------------------------------
# Adaptive worst case
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class AdaptiveSharpnessResult:
    """Adaptive worst-case sharpness, 100 (f_max - f0) / (1 + f0) over |delta_i| <= eps (|x_i| +
    eta), percent (see the module docstring).

    value    the sharpness, percent (= report.value).
    epsilon  the ball's radius eps on delta / (|x| + eta).
    eta      the offset of the scaling |x| + eta (0: Andriushchenko et al.; 1: Metric 2.1).
    ball     "l_inf" (the only one implemented).
    report   the solver's full `SharpnessResult` on that box: f0, f_max, delta, leaf counts,
             iterations, messages, timings.
    """

    value: float
    epsilon: float
    eta: float
    ball: str
    report: SharpnessResult

    notion = "adaptive"

    def to_dict(self) -> dict[str, Any]:
        """{"notion": "adaptive", the settings, value, "report": report.to_dict()}, JSON-ready."""
        return _record_dict(self)

    def to_json(self) -> str:
        """`to_dict()` as one JSON line."""
        return json.dumps(self.to_dict(), sort_keys=True)


def adaptive_sharpness(
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    epsilon: float = 1e-3,
    *,
    eta: float = 0.0,
    mask: Mask = None,
    data: Any = None,
    solver: SolverOptions | None = None,
    **solver_fields: Any,
) -> AdaptiveSharpnessResult:
    """Adaptive worst-case sharpness of `loss_fn` at `params`, in percent:

        100 * ( max_{|delta_i| <= eps (|x_i| + eta)} f(x + delta) - f(x) ) / (1 + f(x)),

    in the full parameter space, maximised as `sharpness` maximises Metric 2.1 (the same
    `solver=SolverOptions(...)` or solver keywords, the same defaults: 10 iterations of
    L-BFGS-B, method "auto", scaling "normalized"; and the same `data`; see
    `keskar_repro.measures.sharpness.sharpness`). eta = 1 gives exactly
    `sharpness(loss_fn, params, epsilon)`. `mask` restricts delta to some leaves (per layer).
    ValueErrors as `sharpness`'s, and for eta < 0.
    """
    options = solver_options(solver, **solver_fields)
    problem = sharpness_problem(with_data(loss_fn, data), params, epsilon,
                                scaling=options.scaling, eta=eta, mask=mask)  # fmt: skip
    report = maximize(problem, options)
    return AdaptiveSharpnessResult(report.value, report.epsilon, report.eta, "l_inf", report)


# --------------------------------------------------------------------------------------------
# Average case
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class AverageSharpnessResult:
    """Average-case sharpness, 100 (E f(x + delta) - f(x)) / (1 + f(x)), percent, by Monte Carlo.

    value        the estimate, percent.
    stderr       its Monte Carlo standard error, percent: std(rises, ddof=1) / sqrt(samples).
    rise         the estimated E f(x + delta) - f(x), in loss units.
    rise_stderr  its standard error, in loss units.
    f0           f(x) as loss_fn computes it.
    epsilon      the scale of delta: std of delta_i = eps, or eps (|x_i| + eta) if adaptive.
    adaptive     whether the scale is elementwise eps (|x_i| + eta).
    eta          the offset of the adaptive scale (0 when not adaptive).
    samples      the number of independent draws d_j.
    antithetic   whether each draw is an antithetic pair (f(x + d_j) + f(x - d_j)) / 2.
    chunk        draws evaluated at once (one vmap over `chunk` perturbed copies).
    loss_evals   evaluations of loss_fn: samples (x 2 if antithetic) + 1.
    leaf_counts  leaves and entries perturbed and held fixed (`measures.pytree.LeafCounts`).
    seconds      wall time of the call (compilation included).
    rises        the per-draw rises f(x + d_j) - f(x) (pair means if antithetic), float64 numpy;
                 not in `to_dict`.
    """

    value: float
    stderr: float
    rise: float
    rise_stderr: float
    f0: float
    epsilon: float
    adaptive: bool
    eta: float
    samples: int
    antithetic: bool
    chunk: int
    loss_evals: int
    leaf_counts: LeafCounts
    seconds: float
    rises: np.ndarray = dataclasses.field(repr=False)

    notion = "average"

    def to_dict(self) -> dict[str, Any]:
        """{"notion": "average", every field but `rises`}, JSON-ready."""
        return _record_dict(self, skip=("rises",))

    def to_json(self) -> str:
        """`to_dict()` as one JSON line."""
        return json.dumps(self.to_dict(), sort_keys=True)


def _sampled_rises(
    loss_fn: Callable,
    params: Any,
    data: Any,
    key: jax.Array,
    epsilon: jax.Array,
    eta: jax.Array,
    *,
    part: Partition,
    samples: int,
    chunk: int,
    antithetic: bool,
    adaptive: bool,
) -> tuple[jax.Array, jax.Array]:
    """(f(x), the `samples` rises), in one compiled program: draw j is d_j = s * N(0, I) from
    split(key, samples)[j], evaluated `chunk` draws at a time (`lax.map` with batch_size)."""
    x, unflatten = part.flatten(params)

    def f(v: jax.Array) -> jax.Array:
        return call(loss_fn, unflatten(v), data)

    f0 = f(x)
    scale = epsilon * (jnp.abs(x) + eta) if adaptive else epsilon

    def rise(draw_key: jax.Array) -> jax.Array:
        d = scale * jax.random.normal(draw_key, x.shape, x.dtype)
        up = f(x + d) - f0
        return 0.5 * (up + (f(x - d) - f0)) if antithetic else up

    return f0, jax.lax.map(rise, jax.random.split(key, samples), batch_size=chunk)


def _jit_rises(loss_fn: Callable) -> Callable:
    static = ("part", "samples", "chunk", "antithetic", "adaptive")
    return jax.jit(functools.partial(_sampled_rises, loss_fn), static_argnames=static)


# `_sampled_rises` compiled for each of the last 8 loss functions (strong references, as in
# measures.sharpness: a loss_fn that closes over a dataset keeps it alive while cached).
_compiled_rises = functools.lru_cache(maxsize=8)(_jit_rises)


def _rises_fn(loss_fn: Callable) -> Callable:
    try:
        return _compiled_rises(loss_fn)
    except TypeError:  # unhashable loss_fn: compiled for this call only
        return _jit_rises(loss_fn)


def average_sharpness(
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    epsilon: float = 1e-3,
    *,
    key: Any = None,
    samples: int = 256,
    adaptive: bool = False,
    eta: float = 0.0,
    antithetic: bool = True,
    chunk: int = 8,
    mask: Mask = None,
    data: Any = None,
) -> AverageSharpnessResult:
    """Average-case sharpness of `loss_fn` at `params`, in percent, with its Monte Carlo error:

        100 * ( E f(x + delta) - f(x) ) / (1 + f(x)),   delta_i ~ N(0, s_i^2),
        s_i = eps, or s_i = eps (|x_i| + eta) with adaptive=True,

    over the entries x that `mask` selects (see the module docstring for the estimator). The
    draws come from `key` (the same key gives the same draws, for a layer alone as for that
    layer under a mask); all `samples` draws run in one compiled program, `chunk` at a time
    (memory: `chunk` perturbed copies of x and of loss_fn's intermediates). Compiled once per
    loss_fn, partition, samples, chunk and flags (the last 8 loss functions are kept); with
    `data`, `loss_fn(params, data)` is measured with the data an argument of that program.
    `key` is a JAX key or an int seed.

    Raises ValueError (naming the argument) for: epsilon <= 0, eta < 0 or eta != 0 without
    adaptive, samples < 2, chunk < 1, a missing key, params with nothing to perturb, a loss_fn
    that is not a scalar function of params, a non-finite loss at params.
    """
    t0 = time.perf_counter()
    epsilon = check_positive("epsilon", epsilon)
    eta = check_positive("eta", eta, zero=True)
    if eta and not adaptive:
        raise ValueError(f"eta={eta} scales only the adaptive perturbation; pass adaptive=True")
    samples = check_int("samples", samples, 2)
    chunk = check_int("chunk", chunk, 1)
    key = check_key(key, "average_sharpness (it draws the perturbations)")
    part = partition(params, mask)
    loss_fn = with_data(loss_fn, data)
    check_loss_fn(loss_fn, params)
    loss_fn, data = split_data(loss_fn)
    params_dev, data = jax.tree_util.tree_map(jnp.asarray, (params, data))
    f0, rises = jax.device_get(
        _rises_fn(loss_fn)(params_dev, data, key, jnp.asarray(epsilon, part.dtype),
                           jnp.asarray(eta, part.dtype), part=part, samples=samples, chunk=chunk,
                           antithetic=bool(antithetic), adaptive=bool(adaptive))
    )  # fmt: skip
    f0, rises = float(f0), np.asarray(rises, dtype=np.float64)
    if not math.isfinite(f0):
        raise ValueError(f"loss_fn(params) is not finite: {f0}")
    rise, rise_stderr = float(np.mean(rises)), float(np.std(rises, ddof=1) / math.sqrt(samples))
    return AverageSharpnessResult(
        value=_percent(rise, f0),
        stderr=_percent(rise_stderr, f0),
        rise=rise,
        rise_stderr=rise_stderr,
        f0=f0,
        epsilon=epsilon,
        adaptive=bool(adaptive),
        eta=eta,
        samples=samples,
        antithetic=bool(antithetic),
        chunk=chunk,
        loss_evals=samples * (2 if antithetic else 1) + 1,
        leaf_counts=part.counts,
        seconds=time.perf_counter() - t0,
        rises=rises,
    )


# --------------------------------------------------------------------------------------------
# Per layer
# --------------------------------------------------------------------------------------------


def per_layer(
    measure: Callable[..., Any],
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    *args: Any,
    depth: int = 1,
    **kwargs: Any,
) -> dict[str, Any]:
    """{layer name: measure(loss_fn, params, *args, mask=that layer's mask, **kwargs)} for each
    layer of `layer_masks(params, depth)` with a floating entry (others are left out).

    `measure` is `sharpness`, `adaptive_sharpness` or `average_sharpness` (or any function with
    their signature). Each layer is one call (and one compilation: the partition is static).
    """
    if "mask" in kwargs:
        raise ValueError("mask is set by per_layer; do not pass it")
    return {
        name: measure(loss_fn, params, *args, mask=mask, **kwargs)
        for name, mask in layer_masks(params, depth).items()
        if has_floating(params, mask)
    }
