"""What the curvature estimators return: one frozen record per estimator, JSON-ready.

`CurvatureReport` holds what every call records (parameter counts, dtypes, HVPs, seconds);
`EigenvalueResult`, `TraceResult` and `SpectralDensity` add each estimator's numbers
(keskar_repro.measures.curvature computes them; the mathematics is in its docstring).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from keskar_repro.measures.checks import check_int, jsonable
from keskar_repro.measures.pytree import LeafCounts

__all__ = ["CurvatureReport", "EigenvalueResult", "TraceResult", "SpectralDensity"]


@dataclasses.dataclass(frozen=True, eq=False)
class CurvatureReport:
    """What every curvature result records about the call.

    n_params          n, the number of variables (scalars in the floating leaves).
    leaf_counts       `pytree.LeafCounts`: the variable leaves ("perturbed") and the
                      non-floating ones held fixed (not in H), leaves and scalars of each.
    param_dtypes      the distinct dtypes of the variable leaves.
    dtype             the work dtype of the Krylov vectors and probe products.
    num_matvecs       Hessian-vector products evaluated, in all.
    seconds           wall time of the whole call (checks, compilation, device work, copies).
    seconds_compile   part of it spent tracing and compiling.
    """

    n_params: int
    leaf_counts: LeafCounts
    param_dtypes: tuple[str, ...]
    dtype: str
    num_matvecs: int
    seconds: float
    seconds_compile: float

    def to_dict(self) -> dict[str, Any]:
        """Every field, arrays as lists, JSON-ready."""
        return {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        """`to_dict()` as one JSON line."""
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclasses.dataclass(frozen=True, eq=False)
class EigenvalueResult(CurvatureReport):
    """k eigenvalues of H from num_matvecs Lanczos steps, with their residual bounds.

    eigenvalues   (k,) float64 Ritz values: descending for "largest" and "magnitude" (by |.|),
                  ascending for "smallest".
    residuals     (k,) r_i = ||H y_i - theta_i y_i|| of the computed T_m: in exact arithmetic
                  an eigenvalue of H lies within r_i of eigenvalues[i] (module docstring).
    errors        (k,) max(r_i, u max|theta|), u the work dtype's machine epsilon: the error
                  the HVPs' own rounding leaves even where r_i falls far below it.
    k, which      how many, and which end of the spectrum ("largest", "smallest", "magnitude").
    tol           the relative tolerance the steps stopped on (0: all num_matvecs steps).
    converged     whether every wanted r_i <= max(tol |theta_i|, u max|theta|) at the end.
    ritz_values   all num_matvecs Ritz values, ascending (the Lanczos spectrum estimate).
    vectors       with vectors=True: the k unit Ritz vectors y_i, pytrees like params, in
                  params' dtypes (None otherwise; not in to_dict).
    """

    eigenvalues: np.ndarray
    residuals: np.ndarray
    errors: np.ndarray
    k: int
    which: str
    tol: float
    converged: bool
    ritz_values: np.ndarray = dataclasses.field(repr=False)
    vectors: tuple | None = dataclasses.field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Every field but the Ritz vectors, JSON-ready."""
        fields = (f.name for f in dataclasses.fields(self) if f.name != "vectors")
        return {name: jsonable(getattr(self, name)) for name in fields}


@dataclasses.dataclass(frozen=True, eq=False)
class TraceResult(CurvatureReport):
    """An estimate of tr H and its standard error.

    value         the estimate of tr H.
    stderr        its estimated standard error (module docstring; 0 when exact).
    method        "hutchinson" or "xtrace".
    num_samples   m, the number of random probes.
    """

    value: float
    stderr: float
    method: str
    num_samples: int


@dataclasses.dataclass(frozen=True, eq=False)
class SpectralDensity(CurvatureReport):
    """The spectral density of H by stochastic Lanczos quadrature (module docstring).

    nodes           (num_probes, lanczos_steps) float64 quadrature nodes theta_lj.
    weights         (num_probes, lanczos_steps) float64 weights tau_lj; each row sums to 1.
    num_probes      P, the Rademacher probes.
    lanczos_steps   m, Lanczos steps per probe (num_matvecs = P m).
    """

    nodes: np.ndarray = dataclasses.field(repr=False)
    weights: np.ndarray = dataclasses.field(repr=False)
    num_probes: int
    lanczos_steps: int

    def density(self, grid: Any, sigma: float) -> np.ndarray:
        """phi(t) at the points `grid`: (1/P) sum_l sum_j tau_lj N(t; theta_lj, sigma^2), a
        density in t (it integrates to 1)."""
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive finite width, got {sigma!r}")
        t = np.asarray(grid, np.float64)[..., None, None]
        kernel = np.exp(-0.5 * ((t - self.nodes) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        return np.sum(kernel * self.weights, axis=(-2, -1)) / self.num_probes

    def trace(self) -> tuple[float, float]:
        """(tr H implied by the quadrature, its standard error over the probes): n times
        `moment(1)`, i.e. the mean over the probes of z^T H z, Hutchinson's estimator."""
        value, error = self.moment(1)
        return self.n_params * value, self.n_params * error

    def moment(self, k: int) -> tuple[float, float]:
        """((1/n) tr(H^k) estimated, its standard error over the probes, ddof 1). Each probe's
        quadrature gives q1^T H^k q1 exactly for k <= 2m - 1."""
        k = check_int("k", k, 0, 2 * self.lanczos_steps - 1)
        per_probe = np.sum(self.weights * self.nodes**k, axis=1)
        error = (
            np.std(per_probe, ddof=1) / math.sqrt(self.num_probes)
            if self.num_probes > 1
            else np.nan
        )
        return float(np.mean(per_probe)), float(error)
