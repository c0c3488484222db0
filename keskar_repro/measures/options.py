"""The settings of a measurement, typed and frozen: `SolverOptions` (how a worst-case box is
maximised) and `MeasureSettings` (the size of the neighbourhood and the estimators' budgets).

This module does not import JAX (nor does keskar_repro.measures.checks, which it uses), so
scripts, statistics and plots can read the settings (and the notion registry,
keskar_repro.measures.registry) without starting JAX.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any

import numpy as np

from keskar_repro.measures.checks import check_choice, check_int, check_positive

METHODS: tuple[str, ...] = ("auto", "lbfgsb", "lbfgsb-device", "pga")
SCALINGS: tuple[str, ...] = ("normalized", "literal")
# How the random n x p matrix A of Metric 2.1's subspace is drawn (keskar_repro.measures.subspace;
# the paper says only "randomly generated"): the first two are the package's historical choices.
SUBSPACE_SCALINGS: tuple[str, ...] = (
    "unit",  # i.i.d. N(0, 1), each column divided by its norm
    "gaussian",  # i.i.d. N(0, 1) (the default)
    "uniform",  # i.i.d. U[0, 1), as numpy.random.rand(n, p) draws them (mean 1/2)
    "uniform_pm1",  # i.i.d. U[-1, 1)
    "rows",  # i.i.d. N(0, 1), each row divided by its norm
    "orthonormal",  # orthonormal columns: Q of a Gaussian matrix (Cholesky QR)
    "smoothout",  # A = pinv(B^T), B = U[-1, 1) with unit columns (SmoothOut's code)
)
LBFGSB_DRIVERS: tuple[str, ...] = ("auto", "public", "setulb")
# the measurements' own arguments, for the hint of a mistyped keyword
_MEASURE_ARGUMENTS = ("epsilon", "subspace_dim", "subspace_scaling", "key", "mask", "data", "eta")


@dataclasses.dataclass(frozen=True)
class SolverOptions:
    """How a worst-case notion's box is maximised; every solver reads the fields it needs.

    method    "auto" (default: "lbfgsb-device" on a GPU/TPU with the normalized scaling,
              "lbfgsb" otherwise), "lbfgsb" (SciPy's L-BFGS-B), "lbfgsb-device" (jaxopt's, in
              one compiled loop) or "pga" (projected sign-gradient ascent, a cross-check).
    maxiter   the iteration budget (the paper's 10).
    scaling   "normalized" (default: box coordinates, objective divided by its first-order
              gain) or "literal" (the paper's formulation; "lbfgsb" only).
    driver    "lbfgsb" only: "setulb" (SciPy's compiled step driven directly), "public"
              (`scipy.optimize.minimize`) or "auto" ("setulb" where SciPy's interface is found).
    pga_step  "pga" only: the step, as a fraction of each half-width, in (0, 2].
    maxfun    "lbfgsb" only: also stop once f has been evaluated this many times (the point
              at x counts; None, the default: no limit). The paper's "10 iterations" read as 10
              evaluations. The "setulb" driver stops right after the maxfun-th evaluation;
              "public" follows SciPy's rule (checked when an iteration ends).

    Every function that runs a solver takes `solver=SolverOptions(...)` and, as a shorthand, the
    same fields as keywords (`sharpness(f, x, 1e-3, maxiter=20)`); `with_overrides` merges them.
    """

    method: str = "auto"
    maxiter: int = 10
    scaling: str = "normalized"
    driver: str = "auto"
    pga_step: float = 0.5
    maxfun: int | None = None

    def __post_init__(self) -> None:
        check_choice("method", self.method, METHODS)
        object.__setattr__(self, "maxiter", check_int("maxiter", self.maxiter, 1))
        check_choice("scaling", self.scaling, SCALINGS)
        check_choice("driver", self.driver, LBFGSB_DRIVERS)
        step = self.pga_step
        step = float(step) if isinstance(step, int | float | np.floating) else math.nan
        if not (0.0 < step <= 2.0):
            raise ValueError(f"pga_step must be in (0, 2], got {self.pga_step!r}")
        object.__setattr__(self, "pga_step", step)
        if self.maxfun is not None:
            object.__setattr__(self, "maxfun", check_int("maxfun", self.maxfun, 2))
        if self.scaling == "literal" and self.method not in ("auto", "lbfgsb"):
            raise ValueError(
                f"scaling='literal' is solved only by method='lbfgsb' (SciPy's L-BFGS-B), not by "
                f"method={self.method!r}, which works in box coordinates: pass method='lbfgsb' "
                f"for the paper's literal formulation, or scaling='normalized'"
            )

    def with_overrides(self, **fields: Any) -> SolverOptions:
        """A copy with `fields` replaced; TypeError naming an unknown field."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(fields) - set(names))
        if unknown:
            known = [*names, *_MEASURE_ARGUMENTS]
            hints = {u: difflib.get_close_matches(u, known, n=1) for u in unknown}
            hint = "; ".join(f"{u!r}: did you mean {h[0]!r}?" for u, h in hints.items() if h)
            raise TypeError(
                f"unknown keyword argument(s) {unknown}: neither an argument of the measurement "
                f"nor a solver option (SolverOptions has {names})" + (f"; {hint}" if hint else "")
            )
        return dataclasses.replace(self, **fields) if fields else self

    def to_dict(self) -> dict[str, Any]:
        """The fields, JSON-ready; `maxfun` only where it is set (so the settings recorded,
        and the cache keys made from them, are those of the options before it existed)."""
        out = dataclasses.asdict(self)
        if out["maxfun"] is None:
            del out["maxfun"]
        return out


def solver_options(solver: SolverOptions | None = None, **fields: Any) -> SolverOptions:
    """`solver` (default `SolverOptions()`) with the keyword shorthand `fields` applied."""
    if solver is not None and not isinstance(solver, SolverOptions):
        raise ValueError(f"solver must be a SolverOptions, got {type(solver).__name__}")
    return (solver or SolverOptions()).with_overrides(**fields)


@dataclasses.dataclass(frozen=True)
class MeasureSettings:
    """What `keskar_repro.measures.measure` needs besides the function, the point and the key;
    each notion reads the fields it needs (see `keskar_repro.measures.registry`).

    epsilon           the neighbourhood's size: the box half-width factor of the worst-case
                      notions and the standard-deviation factor of the average-case ones.
    solver            how worst-case boxes are maximised (`SolverOptions`).
    subspace_dim      p, the dimension of the random subspace of "metric_2_1_subspace".
    subspace_scaling  how A is drawn: "gaussian" (raw N(0, 1) columns, default), "unit" (unit
                      columns) or another of SUBSPACE_SCALINGS (measures.subspace).
    samples           Monte Carlo draws of the average-case notions (antithetic pairs).
    chunk             draws evaluated at once (memory: chunk perturbed copies).
    num_matvecs       the most Lanczos steps for the Hessian's top eigenvalues (None: min(n,
                      max(50, 3k))).
    eig_tol           their relative tolerance on the residual bounds (0: every step).
    top_k             how many of the Hessian's largest eigenvalues are reported.
    trace_method      estimator of the Hessian's trace: "xtrace" (default) or "hutchinson".
    trace_samples     its probes (XTrace: 2 HVPs each, Hutchinson: 1).
    """

    epsilon: float = 1e-3
    solver: SolverOptions = SolverOptions()
    subspace_dim: int = 100
    subspace_scaling: str = "gaussian"
    samples: int = 256
    chunk: int = 8
    num_matvecs: int | None = None
    eig_tol: float = 1e-3
    top_k: int = 10
    trace_method: str = "xtrace"
    trace_samples: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", check_positive("epsilon", self.epsilon))
        if not isinstance(self.solver, SolverOptions):
            raise ValueError(f"solver must be a SolverOptions, got {self.solver!r}")
        check_int("subspace_dim", self.subspace_dim, 1)
        check_choice("subspace_scaling", self.subspace_scaling, SUBSPACE_SCALINGS)
        check_int("samples", self.samples, 2)
        check_int("chunk", self.chunk, 1)
        if self.num_matvecs is not None:
            check_int("num_matvecs", self.num_matvecs, 1)
        check_positive("eig_tol", self.eig_tol, zero=True)
        check_int("top_k", self.top_k, 1)
        check_choice("trace_method", self.trace_method, ("hutchinson", "xtrace"))
        check_int("trace_samples", self.trace_samples, 2)

    def to_dict(self) -> dict[str, Any]:
        """The fields, JSON-ready (the solver as a dict)."""
        return {**dataclasses.asdict(self), "solver": self.solver.to_dict()}
