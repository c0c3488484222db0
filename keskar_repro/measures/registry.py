"""The registry of measurement notions: each notion's name, label, definition and computation.

`NOTIONS[name]` is a `Notion`; `keskar_repro.measures.measure` runs the ones a caller names, the
run store caches them beside saved runs, and scripts, statistics and plots read their names and
labels from here (this module does not import JAX: the computations import what they need when
called). Every notion reports `value` (and `stderr`, 0 for a deterministic one) in its record
(`NotionValue`), with the full report of the function that computed it.

Adding a notion is one `register(...)` call below with its computation, and its known-answer
test. A computation is `compute(loss_fn, params, settings, key, mask) -> (value, stderr,
report)`: `settings` a `MeasureSettings`, `key` a JAX key (None for a notion that draws nothing),
`mask` the leaves to perturb (None: every floating leaf; see keskar_repro.measures.pytree).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from keskar_repro.measures.options import MeasureSettings

Compute = Callable[[Callable, Any, MeasureSettings, Any, Any], tuple[float, float, Any]]


@dataclasses.dataclass(frozen=True)
class Notion:
    """One registered notion.

    name         the key in `NOTIONS` and in every results JSON.
    label        a short label for tables and plots.
    description  what it measures, in one line (formula in the units of Metric 2.1).
    random       whether it draws random numbers (then `measure` needs a key).
    compute      (loss_fn, params, settings, key, mask) -> (value, stderr, report record).
    epsilon      whether the value depends on `settings.epsilon` (False for the Hessian's
                 eigenvalues and trace: a study measures them once per point, not per eps).
    """

    name: str
    label: str
    description: str
    random: bool
    compute: Compute = dataclasses.field(repr=False)
    epsilon: bool = True


NOTIONS: dict[str, Notion] = {}


def register(
    name: str, label: str, description: str, *, random: bool, epsilon: bool = True
) -> Callable:
    """Decorator: register `compute` as the notion `name` (an error if the name is taken)."""

    def add(compute: Compute) -> Compute:
        if name in NOTIONS:
            raise ValueError(f"notion {name!r} is already registered")
        NOTIONS[name] = Notion(name, label, description, random, compute, epsilon)
        return compute

    return add


def get_notion(name: str) -> Notion:
    """`NOTIONS[name]`; ValueError listing the registered names for an unknown one."""
    try:
        return NOTIONS[name]
    except KeyError:
        raise ValueError(f"unknown notion {name!r}; registered: {sorted(NOTIONS)}") from None


def labels(names: Any = None) -> dict[str, str]:
    """{name: label} for `names` (default: every registered notion), in that order."""
    return {n: get_notion(n).label for n in (NOTIONS if names is None else names)}


# --------------------------------------------------------------------------------------------
# The notions
# --------------------------------------------------------------------------------------------


@register(
    "metric_2_1",
    "Metric 2.1",
    "worst case, box |delta_i| <= eps (|x_i| + 1) (the paper's Metric 2.1)",
    random=False,
)
def _metric_2_1(loss_fn, params, settings, key, mask):
    from keskar_repro.measures.sharpness import sharpness

    r = sharpness(loss_fn, params, settings.epsilon, mask=mask, solver=settings.solver)
    return r.value, 0.0, r


@register(
    "metric_2_1_subspace",
    "Metric 2.1, subspace",
    "worst case over y in a random p-dimensional subspace, |y_i| <= eps (|(A^+ x)_i| + 1)",
    random=True,
)
def _metric_2_1_subspace(loss_fn, params, settings, key, mask):
    from keskar_repro.measures.sharpness import sharpness

    r = sharpness(
        loss_fn,
        params,
        settings.epsilon,
        subspace_dim=settings.subspace_dim,
        key=key,
        subspace_scaling=settings.subspace_scaling,
        mask=mask,
        solver=settings.solver,
    )
    return r.value, 0.0, r


@register(
    "adaptive",
    "adaptive worst case",
    "worst case, box |delta_i| <= eps |x_i| (adaptive, Andriushchenko et al. 2023)",
    random=False,
)
def _adaptive(loss_fn, params, settings, key, mask):
    from keskar_repro.measures.notions import adaptive_sharpness

    r = adaptive_sharpness(loss_fn, params, settings.epsilon, mask=mask, solver=settings.solver)
    return r.value, 0.0, r


def _average(loss_fn, params, settings, key, mask, eta):
    from keskar_repro.measures.notions import average_sharpness

    r = average_sharpness(loss_fn, params, settings.epsilon, key=key, samples=settings.samples,
                          adaptive=True, eta=eta, chunk=settings.chunk, mask=mask)  # fmt: skip
    return r.value, r.stderr, r


@register(
    "average",
    "average case",
    "average case, delta_i ~ N(0, (eps (|x_i| + 1))^2): Metric 2.1's box scale",
    random=True,
)
def _average_box_scale(loss_fn, params, settings, key, mask):
    return _average(loss_fn, params, settings, key, mask, eta=1.0)


@register(
    "average_adaptive",
    "adaptive average case",
    "average case, delta_i ~ N(0, (eps |x_i|)^2) (adaptive)",
    random=True,
)
def _average_adaptive(loss_fn, params, settings, key, mask):
    return _average(loss_fn, params, settings, key, mask, eta=0.0)


@register(
    "hessian_max",
    "Hessian lambda_max",
    "the largest eigenvalue of the Hessian (Lanczos to a tolerance; top_k in the report)",
    random=True,
    epsilon=False,
)
def _hessian_max(loss_fn, params, settings, key, mask):
    from keskar_repro.measures.curvature import top_eigenvalues

    r = top_eigenvalues(loss_fn, params, key=key, k=settings.top_k, tol=settings.eig_tol,
                        num_matvecs=settings.num_matvecs, mask=mask)  # fmt: skip
    return float(r.eigenvalues[0]), 0.0, r


@register(
    "hessian_trace",
    "Hessian trace",
    "the trace of the Hessian (XTrace or Hutchinson), with its standard error",
    random=True,
    epsilon=False,
)
def _hessian_trace(loss_fn, params, settings, key, mask):
    from keskar_repro.measures.curvature import hessian_trace

    r = hessian_trace(loss_fn, params, key=key, num_samples=settings.trace_samples,
                      method=settings.trace_method, mask=mask)  # fmt: skip
    return r.value, r.stderr, r
