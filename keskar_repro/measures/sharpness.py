"""Sharpness of a minimizer (Keskar et al. 2017, Metric 2.1): box, random subspace, solvers.

Given parameters x in R^n, eps > 0 and A in R^{n x p} (A = I, p = n, for the full space), the box is

    C_eps = { y in R^p : |y_i| <= eps * (|(A^+ x)_i| + 1) }                   (A^+ x = x for A = I)

and the sharpness, in percent, is

    phi(eps, A) = 100 * ( max_{y in C_eps} f(x + A y) - f(x) ) / (1 + f(x)).

As in the paper the maximisation is inexact: `maxiter` (10) iterations of SciPy's L-BFGS-B on
(-f, -grad f), started at y = 0. This module owns that computation and nothing else: it imports
nothing from keskar_repro outside keskar_repro.measures, so other research code
can use it on any JAX-differentiable `loss_fn(params) -> scalar` of any pytree.

Pytrees. x is the floating-point leaves of params, of any float dtype (float16, bfloat16,
float32, float64), flattened into one vector in the widest of their dtypes and at least float32
(for float32/float64 leaves exactly `jax.flatten_util.ravel_pytree`'s vector); each leaf sees its
piece of x + A y cast back to its own dtype. Non-floating leaves (integer counters, bools, PRNG
keys) are held fixed and passed to loss_fn unchanged, and so are the floating leaves an optional
`mask` leaves out (per-layer sharpness); `SharpnessResult.leaf_counts` counts each kind. See
keskar_repro.measures.pytree for the rules.

Choices the paper leaves open, and what this module does about them (each is recorded in the
returned `SharpnessResult`):

- Stopping. SciPy's default tolerances (ftol, gtol) stop L-BFGS-B at iteration 0 when the
  gradient at x is tiny -- exactly the case of a converged minimizer -- and would return phi = 0.
  Here ftol = gtol = 0 (the smallest values SciPy's L-BFGS-B accepts) and maxfun is unlimited,
  so SciPy stops before `maxiter` only at a point whose projected gradient is exactly zero
  (e.g. a box corner that is a KKT point: "NORM OF PROJECTED GRADIENT <= PGTOL"), when an
  accepted step does not decrease -f at all ("RELATIVE REDUCTION OF F <= FACTR*EPSMCH"; seen
  when the float32 loss is flat at its own resolution), or on a failed line search
  ("ABNORMAL"). Only the first is an end: after the other two the search is started again from
  the best point with a fresh memory, until `maxiter` iterations are done in all, and every
  restart is recorded in `restarts` (without restarts, a linear function in a 10-d subspace of
  a 3000-d space stopped at iteration 4 with 98.8% of its exact maximum). `message` is the
  solver's own, of its last run.
- Scale. L-BFGS-B starts from an identity Hessian, so its first steps have the size of the
  gradient: with a loss of 1e-5 and a box of width 1e-3 the search barely leaves x in 10
  iterations (measured on a linear function of 220 parameters, eps = 1e-3: ~49% of the exact
  maximum at loss scale 1e-6, the exact maximum at scale 1). `scaling="normalized"` (default)
  solves the same problem in box coordinates u = y / h in [-1, 1]^p (h = the box's half-widths)
  with the objective divided by s = mean_i |(h * A^T grad f(x))_i|, the first-order gain of a
  typical coordinate, so that a unit step moves a typical coordinate across its half-width.
  The iterates then do not depend on the scale of f or on eps, and "10 iterations" means the
  same for every minimizer (measured: >= 99% of the exact maximum for the linear and convex
  quadratic functions of tests/test_sharpness.py at loss scales 1e-6 to 1e3, 97-100% in a wider
  synthetic sweep with heavy-tailed gradients; normalising by the largest coordinate instead
  reached only 60-88%). `scaling="literal"` is the paper's formulation:
  L-BFGS-B on y with bounds +-h and objective -f, unscaled.
- Subspace. The paper does not say how A is drawn; see `random_subspace` (`scaling="gaussian"`
  by default, i.e. unit-norm columns).
- Reported maximum. L-BFGS-B's final iterate is not always the best point it evaluated; the
  result reports the best evaluated point, so `f_max` is the loss at the returned perturbation.

`method="pga"` is an independent cross-check on the same box: projected sign-gradient ascent in
box coordinates, run entirely on the device in one jit-compiled `lax.fori_loop`.
Every maximiser is one entry of `SOLVERS` ("lbfgsb", "lbfgsb-device", "pga"): a function
(SharpnessProblem, maxiter, SolverOptions) -> SolverOutcome; `sharpness` validates its arguments,
builds the problem (`sharpness_problem`), runs the solver and builds the `SharpnessResult`
(`maximize` does the last two for a problem built elsewhere, e.g. keskar_repro.measures.notions'
boxes).

Cost. Each evaluation is one compiled value_and_grad (compiled once per loss_fn and shapes), one
host->device copy of the solver's point in the loss dtype and one device->host copy of the
gradient, upcast to float64 for SciPy. SciPy's public L-BFGS-B entry points (`minimize` with a
list of tuples or with `Bounds` of arrays, `fmin_l_bfgs_b`) all convert the bounds with a Python
loop over every variable: measured ~4-6 s per call at n = 1.46 M (SciPy 1.17.1, 2 busy cores),
whatever form the bounds take. `driver="setulb"` (chosen by the default `driver="auto"` wherever
SciPy's interface is recognised) runs the same compiled L-BFGS-B step directly
with vectorised bound setup (bit-identical iterates) and removes that cost; the L-BFGS-B
arithmetic itself remains (~1.2 s per 10 iterations at n = 1.46 M on one BLAS thread, ~2.4 s
with OpenBLAS threads on 2 busy cores). benchmarks/sharpness_overhead.py measures all of this.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from keskar_repro.measures.checks import jsonable, with_data
from keskar_repro.measures.compiled import LBFGSB_MAXCOR, LBFGSB_MAXLS, clear_compiled_cache
from keskar_repro.measures.options import LBFGSB_DRIVERS, METHODS, SolverOptions, solver_options
from keskar_repro.measures.problem import SCALINGS, SharpnessProblem, sharpness_problem
from keskar_repro.measures.pytree import LeafCounts, Mask
from keskar_repro.measures.solvers import SOLVERS, SolverOutcome, _lbfgsb_driver, resolved_method
from keskar_repro.measures.subspace import (
    SUBSPACE_SCALINGS,
    box_bounds,
    pinv_coefficients,
    random_subspace,
)

__all__ = [
    "METHODS",
    "SCALINGS",
    "SUBSPACE_SCALINGS",
    "LBFGSB_DRIVERS",
    "LBFGSB_MAXCOR",
    "LBFGSB_MAXLS",
    "SharpnessResult",
    "SharpnessProblem",
    "SolverOptions",
    "SolverOutcome",
    "SOLVERS",
    "MethodComparison",
    "sharpness",
    "resolved_method",
    "sharpness_problem",
    "maximize",
    "compare_methods",
    "random_subspace",
    "box_bounds",
    "pinv_coefficients",
    "clear_compiled_cache",
]

_AT_BOUND_TOL = 1e-9  # |u_i| >= 1 - tol counts as "at the bound" in `frac_at_bound`

# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class SharpnessResult:
    """One sharpness measurement, phi = 100 (f_max - f0) / (1 + f0) (Metric 2.1), and how.

    value             phi in percent.
    epsilon           box size eps.
    eta               the box's offset, h_i = eps (|(A^+ x)_i| + eta): 1 for Metric 2.1 (0 for
                      keskar_repro.measures.notions' adaptive box).
    subspace_dim      p, or None for the full space (A = I).
    subspace_scaling  how A was drawn (options.SUBSPACE_SCALINGS), "given" for a caller's A,
                      None for the full space.
    n_params          n, the number of perturbed parameters.
    leaf_counts       leaves and entries perturbed, held fixed by the mask, and held fixed as
                      non-floating (`keskar_repro.measures.pytree.LeafCounts`; a dict in `to_dict`).
    f0, f_max         f(x) and f(x + A y) at the returned y, as loss_fn computes them.
    f_final           f at the solver's last iterate (may be below f_max).
    value_linear      100 sum_i |h_i (A^T grad f(x))_i| / (1 + f0): the maximum of the
                      first-order model over the box (a reference, not a bound).
    nit, nfev         iterations and function evaluations as the solver counts them.
    loss_evals        evaluations of loss_fn actually made (including the one at x).
    maxiter           the iteration budget.
    message           the solver's own termination message (of its last run).
    restarts          early stops after which L-BFGS-B was started again from the best point:
                      "after iteration k: <message>" each (empty for the other solvers).
    method            the solver that ran, a key of `SOLVERS`: "lbfgsb", "lbfgsb-device" or "pga"
                      (never "auto": `resolved_method` names the one it picks).
    solver            the solver, its driver and the library versions.
    scaling           "normalized" or "literal" (see the module docstring).
    objective_scale   s, the divisor of the normalised objective (1.0 when literal).
    frac_at_bound     fraction of coordinates of y at the box bound.
    seconds           wall time of the whole call (validation, subspace, compile included).
    seconds_setup     part of it before the solver started (includes the first evaluation).
    seconds_in_evals  part of it inside loss evaluations (device work and host<->device copies).
    y                 the maximising perturbation in box coordinates, float64 numpy, length p.
    delta             A y as a pytree like params (numpy leaves, params' dtypes; zeros on the
                      leaves held fixed, see `keskar_repro.measures.pytree.Partition.perturbation`).
    """

    value: float
    epsilon: float
    eta: float
    subspace_dim: int | None
    subspace_scaling: str | None
    n_params: int
    leaf_counts: LeafCounts
    f0: float
    f_max: float
    f_final: float
    value_linear: float
    nit: int
    nfev: int
    loss_evals: int
    maxiter: int
    message: str
    method: str
    solver: str
    scaling: str
    objective_scale: float
    frac_at_bound: float
    seconds: float
    seconds_setup: float
    seconds_in_evals: float
    y: np.ndarray = dataclasses.field(repr=False)
    delta: Any = dataclasses.field(repr=False)
    restarts: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """All scalar fields (JSON-ready), without the arrays y and delta; adds ||y||_2."""
        out = {
            f.name: jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in ("y", "delta")
        }
        out["y_norm"] = float(np.linalg.norm(self.y))
        return out

    def to_json(self) -> str:
        """`to_dict()` as one JSON line."""
        return json.dumps(self.to_dict(), sort_keys=True)


def _phi(f_max: float, f0: float) -> float:
    return 100.0 * (f_max - f0) / (1.0 + f0)


def _result(
    problem: SharpnessProblem, outcome: SolverOutcome, method: str, maxiter: int, t0: float
) -> SharpnessResult:
    """The `SharpnessResult` of a solver's `outcome` on `problem` (call started at `t0`)."""
    z_best, f_max = outcome.z_best, outcome.f_max
    if z_best is None or not f_max >= problem.f0:  # nothing better than x was evaluated
        z_best, f_max = np.zeros(problem.p), problem.f0
    y = problem.to_y(z_best)
    u = z_best if problem.scaling == "normalized" else z_best / problem.halfwidth
    linear_gain = float(np.sum(np.abs(problem.grad0)))
    if problem.scaling == "literal":
        linear_gain = float(np.sum(np.abs(problem.grad0) * problem.halfwidth))
    return SharpnessResult(
        value=_phi(f_max, problem.f0),
        epsilon=problem.epsilon,
        eta=problem.eta,
        subspace_dim=problem.subspace_dim,
        subspace_scaling=problem.subspace_scaling,
        n_params=problem.n,
        leaf_counts=problem.part.counts,
        f0=problem.f0,
        f_max=f_max,
        f_final=outcome.f_final,
        value_linear=_phi(problem.f0 + linear_gain, problem.f0),
        nit=outcome.nit,
        nfev=outcome.nfev,
        loss_evals=problem.loss_evals,
        maxiter=maxiter,
        message=outcome.message,
        method=method,
        solver=outcome.solver,
        scaling=problem.scaling,
        objective_scale=problem.objective_scale,
        frac_at_bound=float(np.mean(np.abs(u) >= 1.0 - _AT_BOUND_TOL)),
        seconds=time.perf_counter() - t0,
        seconds_setup=problem.seconds_setup,
        seconds_in_evals=problem.seconds_in_evals,
        y=y,
        delta=problem.delta(z_best),
        restarts=outcome.restarts,
    )


def sharpness(
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    epsilon: float = 1e-3,
    *,
    subspace_dim: int | None = None,
    key: Any = None,
    subspace_scaling: str = "gaussian",
    mask: Mask = None,
    data: Any = None,
    A: Any = None,
    solver: SolverOptions | None = None,
    **solver_fields: Any,
) -> SharpnessResult:
    """Sharpness phi(eps, A) of `loss_fn` at `params`, in percent (Keskar et al. 2017, Metric 2.1).

        phi = 100 * ( max_{y in C_eps} f(x + A y) - f(x) ) / (1 + f(x)),
        C_eps = { y : |y_i| <= eps * (|(A^+ x)_i| + 1) },

    with x = the floating leaves of params flattened (`measures.pytree.partition`: any float
    dtype, in their widest dtype and at least float32), f = loss_fn, and A = I for
    subspace_dim=None, else A = random_subspace(key, n, subspace_dim, scaling=subspace_scaling,
    dtype=the params' flat dtype) -- call that to rebuild the matrix; `subspace_scaling` names
    how A is drawn (options.SUBSPACE_SCALINGS). `A=` measures in a subspace of your own (an n x
    p array of full column rank; no key, subspace_dim = p; recorded as "given"). Non-floating
    leaves (integers, bools, PRNG keys) are held fixed and passed to loss_fn as they are; `mask`
    (a pytree prefix of bools, or a callable on leaf paths; see keskar_repro.measures.pytree)
    holds the floating leaves it leaves out fixed as well, e.g. to measure one layer's sharpness
    (keskar_repro.measures.notions.layer_masks). loss_fn must be a JAX-differentiable function
    returning a floating scalar; with `data`, `loss_fn(params, data)` is measured and the data
    are an argument of the compiled programs (one compilation for every dataset of the same
    shapes; see keskar_repro.measures.measure). `key` is a JAX key or an int seed.

    The solver is `solver` (a `SolverOptions`: method, maxiter, scaling, driver, pga_step,
    maxfun), or its fields given as keywords (`maxiter=20, method="pga"`), or both (the keywords
    win).

    method="auto" (default): "lbfgsb-device" on a GPU/TPU, "lbfgsb" on a CPU or with
    scaling="literal" (`resolved_method`); the result's `method` says which ran.

    method="lbfgsb": SciPy's L-BFGS-B on (-f, -grad f) in float64, started at y = 0, run for
    exactly `maxiter` iterations (no tolerance stops it; it stops earlier only at an exact KKT
    point or on a failed line search, see `message`). scaling="normalized" (default) solves it in
    box coordinates with the objective rescaled by its initial gradient magnitude, so the result
    does not depend on the scale of f or of eps; scaling="literal" is the paper's formulation.
    driver="public" calls `scipy.optimize.minimize`; driver="setulb" drives SciPy's compiled
    L-BFGS-B step directly (same iterates; avoids SciPy's per-variable Python loop over the
    bounds, ~4-6 s at n = 1.46 M) and needs SciPy 1.15-1.17's interface; driver="auto"
    (default) is "setulb" where that interface is found and "public" elsewhere.

    method="lbfgsb-device": `maxiter` iterations of jaxopt's L-BFGS-B (the same algorithm, m and
    maxls, tol 0) on the normalized problem, entirely on the device in one compiled loop: no
    host round trip per evaluation and no host-side L-BFGS-B arithmetic (~1 s per iteration at
    n = 1.46 M in SciPy), which dominates on a GPU. float32 on the device instead of SciPy's
    float64; the returned point is the final iterate (the loss is evaluated there once more).

    method="pga": `maxiter` steps of projected sign-gradient ascent in box coordinates,
    u <- clip(u + pga_step * sign(grad), -1, 1), on the device in one compiled loop, keeping the
    best point (pga_step is a fraction of each half-width). A cross-check for "lbfgsb".

    Each method is one function of `SOLVERS` (problem, options) -> `SolverOutcome`; all
    return the best evaluated point (x itself if nothing better was found), so f0 <= f_max =
    f(x + A y). Errors (ValueError, naming the argument): epsilon <= 0, maxiter < 1,
    subspace_dim < 1 or > n, a subspace without key, params with no floating entry to perturb
    (or a mask selecting none), a non-scalar loss_fn, a non-finite loss or gradient at params,
    unknown option values, scaling="literal" with method "pga" or
    "lbfgsb-device" (only SciPy's L-BFGS-B solves the literal problem), driver="setulb" on a
    SciPy without its interface. An unknown solver keyword is a TypeError, as for any function.
    """
    t0 = time.perf_counter()
    options = _solver_settings(solver, solver_fields)
    problem = sharpness_problem(
        with_data(loss_fn, data),
        params,
        epsilon,
        subspace_dim=subspace_dim,
        key=key,
        subspace_scaling=subspace_scaling,
        scaling=options.scaling,
        mask=mask,
        A=A,
    )
    outcome = SOLVERS[options.method](problem, options)
    return _result(problem, outcome, options.method, options.maxiter, t0)


def _solver_settings(solver: SolverOptions | None, fields: dict[str, Any]) -> SolverOptions:
    """The `SolverOptions` that run: `solver` with the keyword `fields`, "auto" resolved to the
    method that runs (`resolved_method`), validated before any evaluation."""
    options = solver_options(solver, **fields)
    options = options.with_overrides(method=resolved_method(options.method, options.scaling))
    if options.method == "lbfgsb":
        _lbfgsb_driver(options.driver)  # a driver this SciPy lacks fails before any evaluation
    elif options.maxfun is not None:
        raise ValueError(
            f"maxfun limits SciPy's L-BFGS-B only, not method={options.method!r}: pass "
            f"method='lbfgsb' with maxfun, or leave maxfun out"
        )
    return options


def maximize(
    problem: SharpnessProblem, solver: SolverOptions | None = None, **solver_fields: Any
) -> SharpnessResult:
    """Run the solver of `solver` (`SolverOptions`, or its fields as keywords; "auto" resolved by
    `resolved_method`) on a fresh `problem` from `sharpness_problem` and report it as `sharpness`
    does. The solver's scaling must be the problem's (a ValueError otherwise).

    `sharpness(loss_fn, params, eps, **kw)` is `maximize(sharpness_problem(loss_fn, params, eps,
    ...), ...)`; measures.notions builds other boxes (eta, mask) and maximizes them here.
    The result's `seconds` is the problem's setup time plus this call's. A problem is solved
    once: its best point and counters carry over to a second call.
    """
    t0 = time.perf_counter() - problem.seconds_setup
    fields = dict(solver_fields)
    if solver is None:
        fields.setdefault("scaling", problem.scaling)
    options = _solver_settings(solver, fields)
    if options.scaling != problem.scaling:
        raise ValueError(
            f"solver scaling={options.scaling!r} but the problem was built with "
            f"scaling={problem.scaling!r}: pass the same to sharpness_problem"
        )
    outcome = SOLVERS[options.method](problem, options)
    return _result(problem, outcome, options.method, options.maxiter, t0)


@dataclasses.dataclass(frozen=True, eq=False)
class MethodComparison:
    """L-BFGS-B and PGA on the same box: which found the larger f_max, and by how much."""

    lbfgsb: SharpnessResult
    pga: SharpnessResult
    larger: str  # "lbfgsb", "pga" or "tie" (equal f_max)
    value_difference: float  # lbfgsb.value - pga.value, percentage points

    def to_dict(self) -> dict[str, Any]:
        """Both results' `to_dict()` and the verdict, JSON-ready."""
        return {
            "lbfgsb": self.lbfgsb.to_dict(),
            "pga": self.pga.to_dict(),
            "larger": self.larger,
            "value_difference": self.value_difference,
        }


def compare_methods(
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    epsilon: float = 1e-3,
    **kwargs: Any,
) -> MethodComparison:
    """Run `sharpness` with method="lbfgsb" and method="pga" (same other arguments) and compare.

    With a subspace, both calls draw the same A from the same key.
    """
    if "method" in kwargs or (kwargs.get("solver") and kwargs["solver"].method != "auto"):
        raise ValueError("method is set by compare_methods; do not pass it")
    lb = sharpness(loss_fn, params, epsilon, method="lbfgsb", **kwargs)
    pg = sharpness(loss_fn, params, epsilon, method="pga", **kwargs)
    larger = "tie" if lb.f_max == pg.f_max else ("lbfgsb" if lb.f_max > pg.f_max else "pga")
    return MethodComparison(lb, pg, larger, lb.value - pg.value)
