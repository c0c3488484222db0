"""Sharpness of a minimizer (Keskar et al. 2017, Metric 2.1): box, random subspace, solvers.

Given parameters x in R^n, eps > 0 and A in R^{n x p} (A = I, p = n, for the full space), the box is

    C_eps = { y in R^p : |y_i| <= eps * (|(A^+ x)_i| + 1) }                   (A^+ x = x for A = I)

and the sharpness, in percent, is

    phi(eps, A) = 100 * ( max_{y in C_eps} f(x + A y) - f(x) ) / (1 + f(x)).

As in the paper the maximisation is inexact: `maxiter` (10) iterations of SciPy's L-BFGS-B on
(-f, -grad f), started at y = 0. This module owns that computation and nothing else: it imports
nothing from keskar_repro but the pytree partition (keskar_repro.pytree), so other research code
can use it on any JAX-differentiable `loss_fn(params) -> scalar` of any pytree.

Pytrees. x is the floating-point leaves of params, of any float dtype (float16, bfloat16,
float32, float64), flattened into one vector in the widest of their dtypes and at least float32
(for float32/float64 leaves exactly `jax.flatten_util.ravel_pytree`'s vector); each leaf sees its
piece of x + A y cast back to its own dtype. Non-floating leaves (integer counters, bools, PRNG
keys) are held fixed and passed to loss_fn unchanged, and so are the floating leaves an optional
`mask` leaves out (per-layer sharpness); `SharpnessResult.leaf_counts` counts each kind. See
keskar_repro.pytree for the rules.

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
(`maximize` does the last two for a problem built elsewhere, e.g. keskar_repro.notions' boxes).

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
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy
import scipy.linalg
import scipy.optimize

from keskar_repro.checks import (
    check_choice,
    check_int,
    check_loss_fn,
    check_positive,
    jsonable,
)
from keskar_repro.pytree import LeafCounts, Mask, Partition, partition

__all__ = [
    "METHODS",
    "SCALINGS",
    "SUBSPACE_SCALINGS",
    "LBFGSB_DRIVERS",
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

METHODS: tuple[str, ...] = ("auto", "lbfgsb", "lbfgsb-device", "pga")
SCALINGS: tuple[str, ...] = ("normalized", "literal")
SUBSPACE_SCALINGS: tuple[str, ...] = ("unit", "gaussian")
LBFGSB_DRIVERS: tuple[str, ...] = ("auto", "public", "setulb")


def resolved_method(method: str = "auto", scaling: str = "normalized") -> str:
    """The solver `method` names: "auto" is "lbfgsb-device" on an accelerator (GPU/TPU) with
    the normalized scaling, where SciPy's host-side L-BFGS-B arithmetic would dominate, and
    "lbfgsb" (SciPy) on a CPU or for the literal scaling (which only SciPy's runs). The two
    agree within 0.3% on F1 minimizers (benchmarks/device_lbfgsb_mnist10k.json)."""
    check_choice("method", method, METHODS)
    if method != "auto":
        return method
    on_accelerator = jax.default_backend() != "cpu"
    return "lbfgsb-device" if on_accelerator and scaling == "normalized" else "lbfgsb"


LBFGSB_MAXCOR = 10  # SciPy's default number of stored corrections (m)
LBFGSB_MAXLS = 20  # SciPy's default maximum number of line-search steps per iteration
_UNLIMITED = int(np.iinfo(np.int32).max)
_HIGHEST = jax.lax.Precision.HIGHEST  # no TF32/bf16 shortcuts in the n x p products on GPUs
_AT_BOUND_TOL = 1e-9  # |u_i| >= 1 - tol counts as "at the bound" in `frac_at_bound`


# --------------------------------------------------------------------------------------------
# Argument checks (every one raises a ValueError that names the argument)
# --------------------------------------------------------------------------------------------


def _check_epsilon(epsilon: Any) -> float:
    return check_positive("epsilon", epsilon)


# --------------------------------------------------------------------------------------------
# The subspace and the box
# --------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnums=(1, 2, 3))
def _gaussian_matrix(key: jax.Array, n: int, p: int, dtype: Any) -> jax.Array:
    return jax.random.normal(key, (n, p), dtype=dtype)


@partial(jax.jit, donate_argnums=0)
def _unit_columns(a: jax.Array) -> jax.Array:
    # The input buffer is donated, so the normalised matrix reuses it: one n x p matrix at a time.
    return a / jnp.sqrt(jnp.sum(a * a, axis=0, keepdims=True))


def random_subspace(
    key: jax.Array, n: int, p: int, *, scaling: str = "gaussian", dtype: Any = jnp.float32
) -> jax.Array:
    """The n x p matrix A spanning a random p-dimensional subspace of the parameter space.

    Entries are drawn i.i.d. N(0, 1) with `jax.random.normal(key, (n, p), dtype)`; then

    - scaling="gaussian" (default): the raw Gaussian matrix, columns of norm ~ sqrt(n);
    - scaling="unit": every column divided by its Euclidean norm, ||A e_j|| = 1.

    The box's "+1" term gives every coordinate y_i an absolute half-width of at least eps, so
    the metric depends on the length of the columns of A. With unit columns y_i is a
    displacement of length |y_i| along a random direction, as in the full space, but for F1
    such a box is tiny: the largest rise of f in it is its first-order term (value /
    value_linear = 0.995-1.003 on mnist10k SB minimizers), so the "unit" value measures the
    gradient's projection on the subspace, not curvature, and it is larger for SB, whose
    gradient at the end of training is larger, in every seed. With raw Gaussian columns (norm
    ~ sqrt(n) = 1209 for F1) a unit step in y_i moves the parameters ~sqrt(n) times as far, the
    box reaches where f curves, and the values order as in the paper's Table 4 (LB above SB),
    still far below full-space ones (mnist10k LB minimizers, eps 1e-3, paper_notes.md: 0.24
    with Gaussian columns, 1.7e-6 with unit columns, 202 in the full space). That is the
    convention the package's tables report, hence the default; the paper does not state its
    choice, so it is a parameter and is recorded in every result.

    The same key, n, p, scaling and dtype rebuild the same matrix (JAX's counter-based PRNG;
    the last bits of a normal deviate may differ between CPU and GPU backends). At most one
    n x p matrix is alive at a time (the normalisation donates its input).
    """
    if key is None:
        raise ValueError("key is required to draw a random subspace")
    n = check_int("n", n, 1)
    p = check_int("p", p, 1, n)
    check_choice("scaling", scaling, SUBSPACE_SCALINGS)
    a = _gaussian_matrix(key, n, p, jnp.dtype(dtype))
    return _unit_columns(a) if scaling == "unit" else a


@jax.jit
def _gram_and_rhs(a: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = x.astype(a.dtype)
    return jnp.matmul(a.T, a, precision=_HIGHEST), jnp.matmul(x, a, precision=_HIGHEST)


def pinv_coefficients(x_flat: Any, A: Any) -> np.ndarray:
    """A^+ x = (A^T A)^{-1} A^T x, in float64, without forming a pseudo-inverse.

    The p x p Gram matrix A^T A and A^T x are computed on A's device (highest matmul precision);
    the p x p system is solved on the host in float64 by a Cholesky factorisation. A must have
    full column rank (random Gaussian A with p <= n has, with probability 1).
    """
    A = jnp.asarray(A)
    if A.ndim != 2:
        raise ValueError(f"A must be a 2-D (n, p) matrix, got shape {A.shape}")
    x = jnp.ravel(jnp.asarray(x_flat))
    if x.shape[0] != A.shape[0]:
        raise ValueError(f"x_flat has {x.shape[0]} entries but A has {A.shape[0]} rows")
    gram, rhs = jax.device_get(_gram_and_rhs(A, x))
    gram = np.asarray(gram, dtype=np.float64)
    rhs = np.asarray(rhs, dtype=np.float64)
    try:
        factor = scipy.linalg.cho_factor(gram, lower=True, check_finite=True)
    except (np.linalg.LinAlgError, ValueError) as err:
        raise ValueError(f"A must have full column rank and finite entries: {err}") from err
    return scipy.linalg.cho_solve(factor, rhs)


def box_bounds(
    x_flat: Any, epsilon: float, A: Any = None, *, eta: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds (float64 numpy) of C_eps = {z : |z_i| <= eps (|(A^+ x)_i| + eta)}.

    For A = None (the full space, A = I) the half-widths are eps * (|x_i| + eta), one per
    parameter; for an n x p matrix A they are eps * (|(A^+ x)_i| + eta), one per subspace
    coordinate, with A^+ x from `pinv_coefficients` (a p x p Gram solve; no dense pseudo-inverse).
    eta = 1 (default) is Metric 2.1's box; eta = 0 the adaptive box of keskar_repro.notions. The
    box is symmetric: lower = -upper.
    """
    eps = _check_epsilon(epsilon)
    eta = check_positive("eta", eta, zero=True)
    if A is None:
        x = np.asarray(jax.device_get(x_flat), dtype=np.float64).ravel()
        if x.size == 0:
            raise ValueError("x_flat is empty")
    else:
        x = pinv_coefficients(x_flat, A)
    if not np.all(np.isfinite(x)):
        raise ValueError("x_flat must be finite (the box is centred on it)")
    upper = eps * (np.abs(x) + eta)
    return -upper, upper


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
    h: jax.Array | None,
    a: jax.Array | None,
    *,
    part: Partition,
) -> tuple[jax.Array, jax.Array]:
    """f(x + A (h * z)) and its gradient in z (h = None: z is y; a = None: A = I), x the entries
    of params that `part` perturbs."""
    x_flat, unravel = part.flatten(params)
    value, g = jax.value_and_grad(lambda v: loss_fn(unravel(v)))(x_flat + _delta_flat(z, h, a))
    if a is not None:
        g = jnp.matmul(g, a, precision=_HIGHEST)
    if h is not None:
        g = h * g
    return value, g


def _pga_loop(
    loss_fn: Callable,
    params: Any,
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
        v, g = _value_and_grad_z(loss_fn, u, params, h, a, part=part)
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
        value, grad = _value_and_grad_z(loss_fn, u, params, h, a, part=part)
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


# --------------------------------------------------------------------------------------------
# The problem seen by the solvers
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class SharpnessProblem:
    """The box-constrained maximisation of Metric 2.1, in the solver's variables z.

    x is the entries of params that `part` perturbs (n of them); h_i = eps (|(A^+ x)_i| + eta)
    are the box's half-widths (eta = 1 for Metric 2.1). y = h * z with z in [-1, 1]^p for
    scaling="normalized", y = z in [-h, h] for scaling="literal". `fun_and_grad(z)` returns what
    L-BFGS-B minimizes, in float64:

        normalized:  F(z) = -(f(x + A (h * z)) - f0) / s,   grad F = -(h * A^T grad f) / s
        literal:     F(z) = -f(x + A z),                     grad F = -A^T grad f

    with s = `objective_scale` = mean_i |h_i (A^T grad f(x))_i| (1 if that is 0 or not finite).
    Every call is one evaluation of the compiled value_and_grad (one host->device copy of z in the
    loss dtype, one device->host copy of the gradient); the best evaluated point is tracked.
    """

    loss_fn: Callable
    params: Any  # on the device
    part: Partition  # which leaves of params are perturbed, and the flat dtype
    n: int
    p: int
    epsilon: float
    eta: float  # the box's offset: 1 for Metric 2.1, 0 for the adaptive box
    subspace_dim: int | None
    subspace_scaling: str | None
    scaling: str
    A: jax.Array | None
    halfwidth: np.ndarray  # float64, length p
    lower: np.ndarray  # solver-variable bounds, float64
    upper: np.ndarray
    dtype: np.dtype  # dtype of the flattened parameters (and of the perturbation)
    loss_dtype: np.dtype  # dtype of loss_fn's value
    f0: float
    grad0: np.ndarray  # ascent gradient of f in z at z = 0, float64 (before / s)
    objective_scale: float
    seconds_setup: float = 0.0
    loss_evals: int = 0
    seconds_in_evals: float = 0.0
    best_f: float = -math.inf
    best_z: np.ndarray | None = None
    last_f: float = math.nan
    _compiled: _Compiled | None = None
    _h_dev: jax.Array | None = None
    _original_params: Any = None  # as passed, for the dtypes of the returned perturbation

    # -- evaluation -------------------------------------------------------------------------

    def _record(self, z: np.ndarray, f: float) -> None:
        self.last_f = f
        if f > self.best_f:  # NaN never wins
            self.best_f = f
            self.best_z = np.array(z, dtype=np.float64, copy=True)

    def evaluate(self, z: Any) -> tuple[float, np.ndarray]:
        """(f(x + A y(z)), ascent gradient of f in z), float64 on the host; one loss evaluation."""
        t0 = time.perf_counter()
        z = np.clip(np.asarray(z, dtype=np.float64), self.lower, self.upper)
        value, grad = self._compiled.value_and_grad(
            jnp.asarray(z.astype(self.dtype, copy=False)),
            self.params,
            self._h_dev,
            self.A,
            part=self.part,
        )
        value, grad = jax.device_get((value, grad))
        f = float(value)
        grad = np.asarray(grad, dtype=np.float64)
        self.loss_evals += 1
        self.seconds_in_evals += time.perf_counter() - t0
        self._record(z, f)
        return f, grad

    def fun_and_grad(self, z: Any) -> tuple[float, np.ndarray]:
        """The objective L-BFGS-B minimizes and its gradient (see the class docstring)."""
        z = np.asarray(z, dtype=np.float64)
        if self.loss_evals > 0 and not np.any(z):  # z = 0 was evaluated when building the problem
            f, grad = self.f0, self.grad0
        else:
            f, grad = self.evaluate(z)
        if self.scaling == "literal":
            return -f, -grad
        return -(f - self.f0) / self.objective_scale, grad * (-1.0 / self.objective_scale)

    def fun(self, z: Any) -> float:
        """F(z) alone (one evaluation), e.g. for `scipy.optimize.check_grad`."""
        return self.fun_and_grad(z)[0]

    def jac(self, z: Any) -> np.ndarray:
        """grad F(z) alone (one evaluation)."""
        return self.fun_and_grad(z)[1]

    # -- conversions ------------------------------------------------------------------------

    def to_y(self, z: np.ndarray) -> np.ndarray:
        """Box coordinates y (float64) of solver variables z."""
        z = np.asarray(z, dtype=np.float64)
        return self.halfwidth * z if self.scaling == "normalized" else z

    def delta(self, z: np.ndarray) -> Any:
        """The parameter perturbation A y(z) as a pytree of numpy arrays in the params' dtypes,
        zeros on the leaves held fixed (`Partition.perturbation`).

        Computed on the device exactly as in the evaluations (in the flat dtype).
        """
        flat = _delta_jit(jnp.asarray(np.asarray(z).astype(self.dtype)), self._h_dev, self.A)
        return self.part.perturbation(flat, self._original_params)


def sharpness_problem(
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    epsilon: float = 1e-3,
    *,
    subspace_dim: int | None = None,
    key: jax.Array | None = None,
    subspace_scaling: str = "gaussian",
    scaling: str = "normalized",
    eta: float = 1.0,
    mask: Mask = None,
) -> SharpnessProblem:
    """Validate the arguments and build the `SharpnessProblem` (one evaluation of f at x).

    x is the floating leaves of params that `mask` selects (`keskar_repro.pytree.partition`;
    None: all of them); the box's half-widths are eps (|(A^+ x)_i| + eta), eta = 1 (default)
    for Metric 2.1, eta = 0 for the adaptive box of keskar_repro.notions.

    Raises ValueError naming the argument for: epsilon <= 0, eta < 0, subspace_dim < 1 or > n,
    a missing key for a subspace (or a key without subspace_dim), params without floating
    entries to perturb (or a mask that selects none), a loss_fn that is not a scalar function
    of params, and a non-finite loss or gradient at x.
    """
    t0 = time.perf_counter()
    eps = _check_epsilon(epsilon)
    eta = check_positive("eta", eta, zero=True)
    check_choice("scaling", scaling, SCALINGS)
    check_choice("subspace_scaling", subspace_scaling, SUBSPACE_SCALINGS)
    part = partition(params, mask)
    n = part.n
    if subspace_dim is not None:
        subspace_dim = check_int("subspace_dim", subspace_dim, 1, n)
        if key is None:
            raise ValueError("key is required when subspace_dim is given (it draws A)")
    elif key is not None:
        raise ValueError("key was given but subspace_dim is None (full space uses no key)")
    loss_dtype = check_loss_fn(loss_fn, params)

    params_dev = jax.tree_util.tree_map(jnp.asarray, params)
    x_flat, _ = part.flatten(params_dev)
    if not bool(jnp.all(jnp.isfinite(x_flat))):
        raise ValueError("params must be finite")
    dtype = np.dtype(x_flat.dtype)
    A = None
    if subspace_dim is not None:
        A = random_subspace(key, n, subspace_dim, scaling=subspace_scaling, dtype=dtype)
    _, upper = box_bounds(x_flat, eps, A, eta=eta)
    p = upper.shape[0]
    if scaling == "normalized":
        lower_z, upper_z = -np.ones(p), np.ones(p)
        h_dev = jnp.asarray(upper.astype(dtype))
    else:
        lower_z, upper_z = -upper, upper
        h_dev = None

    problem = SharpnessProblem(
        loss_fn=loss_fn,
        params=params_dev,
        part=part,
        n=n,
        p=p,
        epsilon=eps,
        eta=eta,
        subspace_dim=subspace_dim,
        subspace_scaling=None if subspace_dim is None else subspace_scaling,
        scaling=scaling,
        A=A,
        halfwidth=upper,
        lower=lower_z,
        upper=upper_z,
        dtype=dtype,
        loss_dtype=loss_dtype,
        f0=math.nan,
        grad0=np.zeros(p),
        objective_scale=1.0,
        _compiled=_compiled(loss_fn),
        _h_dev=h_dev,
        _original_params=params,
    )
    f0, grad0 = problem.evaluate(np.zeros(p))  # compiles on the first call for these shapes
    if not math.isfinite(f0):
        raise ValueError(f"loss_fn(params) is not finite: {f0}")
    if not np.all(np.isfinite(grad0)):
        raise ValueError("the gradient of loss_fn at params is not finite")
    problem.f0, problem.grad0 = f0, grad0
    if scaling == "normalized":
        s = float(np.mean(np.abs(grad0)))
        problem.objective_scale = s if (math.isfinite(s) and s > 0.0) else 1.0
    problem.seconds_setup = time.perf_counter() - t0
    return problem


# --------------------------------------------------------------------------------------------
# Solvers
# --------------------------------------------------------------------------------------------

# The task codes of SciPy's L-BFGS-B (scipy/optimize/_lbfgsb_py.py, SciPy >= 1.15).
_TASK_STATUS = {0: "START", 1: "NEW_X", 2: "RESTART", 3: "FG", 4: "CONVERGENCE", 5: "STOP",
                6: "WARNING", 7: "ERROR", 8: "ABNORMAL"}  # fmt: skip
_SETULB_SIGNATURE = (
    "setulb(m,x,l,u,nbd,f,g,factr,pgtol,wa,iwa,task,lsave,isave,dsave,maxls,ln_task)"
)


def _setulb() -> Callable | None:
    """SciPy's compiled L-BFGS-B step `setulb`, if it has the interface this module drives."""
    try:
        from scipy.optimize import _lbfgsb  # private: guarded by the signature check below
    except ImportError:
        return None
    doc = "".join((getattr(_lbfgsb.setulb, "__doc__", "") or "").split())  # without whitespace
    return _lbfgsb.setulb if doc.startswith(_SETULB_SIGNATURE) else None


def _task_message(task: np.ndarray) -> str:
    try:
        from scipy.optimize._lbfgsb_py import task_messages
    except ImportError:  # pragma: no cover - message text only
        task_messages = {}
    status = _TASK_STATUS.get(int(task[0]), str(int(task[0])))
    return f"{status}: {task_messages.get(int(task[1]), str(int(task[1])))}"


def _lbfgsb_setulb(
    fun_and_grad: Callable,
    lower: np.ndarray,
    upper: np.ndarray,
    maxiter: int,
    x0: np.ndarray | None = None,
) -> tuple[np.ndarray, int, int, str]:
    """L-BFGS-B by SciPy's own compiled `setulb`, driven exactly as `minimize` drives it.

    The same reverse-communication loop as scipy.optimize._lbfgsb_py._minimize_lbfgsb (SciPy
    1.15-1.17), with ftol = gtol = 0, but with the bound types set in one vectorised step instead
    of SciPy's per-variable Python loop (seconds at n ~ 1.5 M). Same iterates, bit for bit.
    """
    setulb = _setulb()
    if setulb is None:
        raise RuntimeError("this SciPy's L-BFGS-B has an unknown interface; use driver='public'")
    m, n = LBFGSB_MAXCOR, lower.shape[0]
    lower = np.ascontiguousarray(lower, dtype=np.float64)
    upper = np.ascontiguousarray(upper, dtype=np.float64)
    fin_l, fin_u = np.isfinite(lower), np.isfinite(upper)
    nbd = np.where(fin_l & fin_u, 2, np.where(fin_l, 1, np.where(fin_u, 3, 0))).astype(np.int32)
    low = np.where(fin_l, lower, 0.0)
    upp = np.where(fin_u, upper, 0.0)
    x = np.clip(np.zeros(n) if x0 is None else np.array(x0, dtype=np.float64), lower, upper)
    f = 0.0
    g = np.zeros(n, dtype=np.float64)
    wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m, dtype=np.float64)
    iwa = np.zeros(3 * n, dtype=np.int32)
    task = np.zeros(2, dtype=np.int32)
    ln_task = np.zeros(2, dtype=np.int32)
    lsave = np.zeros(4, dtype=np.int32)
    isave = np.zeros(44, dtype=np.int32)
    dsave = np.zeros(29, dtype=np.float64)
    nit = nfev = 0
    while True:
        setulb(m, x, low, upp, nbd, f, g, 0.0, 0.0, wa, iwa, task, lsave, isave, dsave,
               LBFGSB_MAXLS, ln_task)  # fmt: skip
        if task[0] == 3:  # FG: evaluate at x
            f, g = fun_and_grad(x)
            f = float(f)
            g = np.ascontiguousarray(g, dtype=np.float64)
            nfev += 1
        elif task[0] == 1:  # NEW_X: an iteration is complete
            nit += 1
            if nit >= maxiter:
                task[0], task[1] = 5, 504
        else:
            break
    return x, nit, nfev, _task_message(task)


def _lbfgsb_public(
    fun_and_grad: Callable,
    lower: np.ndarray,
    upper: np.ndarray,
    maxiter: int,
    x0: np.ndarray | None = None,
) -> tuple[np.ndarray, int, int, str]:
    """L-BFGS-B through the public `scipy.optimize.minimize` with `Bounds` of numpy arrays."""
    res = scipy.optimize.minimize(
        fun_and_grad,
        np.zeros(lower.shape[0]) if x0 is None else np.asarray(x0, dtype=np.float64),
        jac=True,
        method="L-BFGS-B",
        bounds=scipy.optimize.Bounds(lower, upper),
        options={
            "maxiter": maxiter,
            "maxfun": _UNLIMITED,
            "ftol": 0.0,
            "gtol": 0.0,
            "maxcor": LBFGSB_MAXCOR,
            "maxls": LBFGSB_MAXLS,
        },
    )
    return np.asarray(res.x), int(res.nit), int(res.nfev), str(res.message)


@dataclasses.dataclass(frozen=True)
class SolverOptions:
    """The solvers' options; each solver reads only the ones that concern it.

    driver    "lbfgsb" only: "setulb" (SciPy's compiled L-BFGS-B step, driven by this module),
              "public" (`scipy.optimize.minimize`) or "auto" ("setulb" where SciPy's interface
              is recognised, else "public").
    pga_step  "pga" only: the step, as a fraction of each half-width, in (0, 2].
    """

    driver: str = "auto"
    pga_step: float = 0.5

    def __post_init__(self) -> None:
        check_choice("driver", self.driver, LBFGSB_DRIVERS)
        step = self.pga_step
        step = float(step) if isinstance(step, int | float | np.floating) else math.nan
        if not (0.0 < step <= 2.0):
            raise ValueError(f"pga_step must be in (0, 2], got {self.pga_step!r}")
        object.__setattr__(self, "pga_step", step)


@dataclasses.dataclass(frozen=True, eq=False)
class SolverOutcome:
    """What one solver found on a `SharpnessProblem`, in the problem's solver variables z.

    z_best      the best evaluated point (None: none recorded); `sharpness` reports z = 0 instead
                when it is None or no better than x.
    f_max       f at z_best.
    f_final     f at the solver's last iterate (may be below f_max).
    nit, nfev   iterations and function evaluations as the solver counts them.
    message     the solver's own termination message (of its last run, after restarts).
    solver      the solver, its settings and the library versions.
    restarts    for each early stop that was restarted: "after iteration k: <message>".
    """

    z_best: np.ndarray | None
    f_max: float
    f_final: float
    nit: int
    nfev: int
    message: str
    solver: str
    restarts: tuple[str, ...] = ()


def _check_normalized(method: str, scaling: str) -> None:
    """Only SciPy's L-BFGS-B solves the literal problem; the others work in box coordinates."""
    if scaling == "literal" and method != "lbfgsb":
        raise ValueError(
            f"scaling='literal' is solved only by method='lbfgsb' (SciPy's L-BFGS-B), not by "
            f"method={method!r}, which works in box coordinates: pass method='lbfgsb' for the "
            f"paper's literal formulation, or scaling='normalized' with method={method!r}"
        )


def _lbfgsb_driver(driver: str) -> str:
    """`driver` with "auto" resolved; ValueError where "setulb" is asked of a SciPy without it."""
    if driver == "auto":
        return "public" if _setulb() is None else "setulb"
    if driver == "setulb" and _setulb() is None:
        raise ValueError(
            f"driver='setulb' needs SciPy 1.15-1.17's L-BFGS-B interface (have {scipy.__version__})"
        )
    return driver


_KKT_MESSAGE = "PROJECTED GRADIENT"  # "NORM OF PROJECTED GRADIENT <= PGTOL", with pgtol = 0


def _solve_lbfgsb(problem: SharpnessProblem, maxiter: int, options: SolverOptions) -> SolverOutcome:
    """SciPy's L-BFGS-B on `problem.fun_and_grad` from z = 0, through `options.driver`, for
    exactly `maxiter` iterations in all.

    Only the iteration limit or an exact KKT point (projected gradient exactly 0) ends the
    search. When L-BFGS-B stops earlier for another reason -- no decrease of F at float
    resolution ("RELATIVE REDUCTION OF F"), a failed line search ("ABNORMAL") -- it is started
    again from the best point so far with a fresh memory (an identity Hessian, i.e. a projected
    gradient step first) for the iterations left; each restart is recorded. A restart that
    makes no iteration at all ends the search (nothing more can be done from that point).
    """
    driver = _lbfgsb_driver(options.driver)
    run = _lbfgsb_setulb if driver == "setulb" else _lbfgsb_public
    nit = nfev = 0
    restarts: list[str] = []
    start = None
    while True:
        _, k, evals, message = run(
            problem.fun_and_grad, problem.lower, problem.upper, maxiter - nit, start
        )
        nit, nfev = nit + k, nfev + evals
        if nit >= maxiter or _KKT_MESSAGE in message or k == 0 or problem.best_z is None:
            break
        restarts.append(f"after iteration {nit}: {message}")
        start = problem.best_z
    solver = (
        "scipy.optimize._lbfgsb.setulb (L-BFGS-B, direct driver)"
        if driver == "setulb"
        else "scipy.optimize.minimize(method='L-BFGS-B', bounds=Bounds)"
    )
    solver += (
        f"; m={LBFGSB_MAXCOR}, maxls={LBFGSB_MAXLS}, ftol=gtol=0, restarts from the best point"
    )
    solver += f"; SciPy {scipy.__version__}"
    return SolverOutcome(
        problem.best_z, problem.best_f, problem.last_f, nit, nfev, message, solver, tuple(restarts)
    )


def _on_device(problem: SharpnessProblem, loop: Callable, *args: Any, **kwargs: Any) -> tuple:
    """`loop(params, h, A, f0, *args, **kwargs)`, one compiled loop of a device solver, its
    outputs copied to the host; its time counts as time in loss evaluations."""
    t0 = time.perf_counter()
    f0 = jnp.asarray(problem.f0, dtype=problem.loss_dtype)
    args = (problem.params, problem._h_dev, problem.A, f0, *args)
    out = jax.device_get(loop(*args, part=problem.part, **kwargs))
    problem.seconds_in_evals += time.perf_counter() - t0
    return out


def _solve_lbfgsb_device(
    problem: SharpnessProblem, maxiter: int, options: SolverOptions
) -> SolverOutcome:
    """jaxopt's L-BFGS-B (`_device_lbfgsb`) on the normalized problem, in one compiled loop on
    the device; f is then evaluated once more at its final iterate. Uses no option."""
    _check_normalized("lbfgsb-device", problem.scaling)
    u, _, nit, nfev = _on_device(
        problem,
        problem._compiled.device_lbfgsb,
        jnp.asarray(problem.objective_scale, dtype=problem.loss_dtype),
        maxiter=maxiter,
    )
    problem.loss_evals += int(nfev)
    f_final, _ = problem.evaluate(np.asarray(u, dtype=np.float64))  # the loss at u, exactly
    nit = int(nit)
    return SolverOutcome(
        z_best=problem.best_z,
        f_max=problem.best_f,
        f_final=f_final,
        nit=nit,
        nfev=int(nfev) + 1,
        message=f"jaxopt.LBFGSB: {nit} iterations on the device",
        solver=(
            f"jaxopt.LBFGSB (on the device); m={LBFGSB_MAXCOR}, maxls={LBFGSB_MAXLS}, tol=0; "
            f"jaxopt {_jaxopt_version()}, JAX {jax.__version__}"
        ),
    )


def _solve_pga(problem: SharpnessProblem, maxiter: int, options: SolverOptions) -> SolverOutcome:
    """`maxiter` steps of projected sign-gradient ascent (`_pga_loop`, step `options.pga_step`)
    on the normalized problem, in one compiled loop on the device; keeps the best point."""
    _check_normalized("pga", problem.scaling)
    step = options.pga_step
    best_u, best_v, best_i, v_last = _on_device(
        problem,
        problem._compiled.pga,
        jnp.asarray(problem.grad0.astype(problem.dtype)),
        jnp.asarray(maxiter, dtype=jnp.int32),
        jnp.asarray(step, dtype=problem.dtype),
    )
    problem.loss_evals += maxiter
    return SolverOutcome(
        z_best=np.asarray(best_u, dtype=np.float64),
        f_max=float(best_v),
        f_final=float(v_last),
        nit=maxiter,
        nfev=maxiter + 1,
        message=f"PGA: completed {maxiter} steps; best point at step {int(best_i)}",
        solver=f"projected sign-gradient ascent, step {step:g} half-widths; JAX {jax.__version__}",
    )


# The maximisers of Metric 2.1, by `method` name: solver(problem, maxiter, options). Each starts
# at z = 0 (evaluated when the problem was built) and leaves problem's counters up to date.
SOLVERS: dict[str, Callable[[SharpnessProblem, int, SolverOptions], SolverOutcome]] = {
    "lbfgsb": _solve_lbfgsb,
    "lbfgsb-device": _solve_lbfgsb_device,
    "pga": _solve_pga,
}


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def _jaxopt_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("jaxopt")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclasses.dataclass(frozen=True, eq=False)
class SharpnessResult:
    """One sharpness measurement, phi = 100 (f_max - f0) / (1 + f0) (Metric 2.1), and how.

    value             phi in percent.
    epsilon           box size eps.
    eta               the box's offset, h_i = eps (|(A^+ x)_i| + eta): 1 for Metric 2.1 (0 for
                      keskar_repro.notions' adaptive box).
    subspace_dim      p, or None for the full space (A = I).
    subspace_scaling  column scaling of A ("unit" or "gaussian"; None for the full space).
    n_params          n, the number of perturbed parameters.
    leaf_counts       leaves and entries perturbed, held fixed by the mask, and held fixed as
                      non-floating (`keskar_repro.pytree.LeafCounts`; a dict in `to_dict`).
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
                      leaves held fixed, see `keskar_repro.pytree.Partition.perturbation`).
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
    key: jax.Array | None = None,
    maxiter: int = 10,
    method: str = "auto",
    scaling: str = "normalized",
    subspace_scaling: str = "gaussian",
    driver: str = "auto",
    pga_step: float = 0.5,
    mask: Mask = None,
) -> SharpnessResult:
    """Sharpness phi(eps, A) of `loss_fn` at `params`, in percent (Keskar et al. 2017, Metric 2.1).

        phi = 100 * ( max_{y in C_eps} f(x + A y) - f(x) ) / (1 + f(x)),
        C_eps = { y : |y_i| <= eps * (|(A^+ x)_i| + 1) },

    with x = the floating leaves of params flattened (`keskar_repro.pytree.partition`: any float
    dtype, in their widest dtype and at least float32), f = loss_fn, and A = I for
    subspace_dim=None, else A = random_subspace(key, n, subspace_dim, scaling=subspace_scaling,
    dtype=the params' flat dtype) -- call that to rebuild the matrix. Non-floating leaves
    (integers, bools, PRNG keys) are held fixed and passed to loss_fn as they are; `mask` (a
    pytree prefix of bools, or a callable on leaf paths; see keskar_repro.pytree) holds the
    floating leaves it leaves out fixed as well, e.g. to measure one layer's sharpness
    (keskar_repro.notions.layer_masks). loss_fn must be a JAX-differentiable function
    returning a floating scalar.

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

    Each method is one function of `SOLVERS` (problem, maxiter, options) -> `SolverOutcome`; all
    return the best evaluated point (x itself if nothing better was found), so f0 <= f_max =
    f(x + A y). Errors (ValueError, naming the argument): epsilon <= 0, maxiter < 1,
    subspace_dim < 1 or > n, a subspace without key, params with no floating entry to perturb
    (or a mask selecting none), a non-scalar loss_fn, a non-finite loss or gradient at params,
    unknown option values, scaling="literal" with method "pga" or
    "lbfgsb-device" (only SciPy's L-BFGS-B solves the literal problem), driver="setulb" on a
    SciPy without its interface.
    """
    t0 = time.perf_counter()
    maxiter, method, options = _solver_settings(maxiter, method, scaling, driver, pga_step)
    problem = sharpness_problem(
        loss_fn,
        params,
        epsilon,
        subspace_dim=subspace_dim,
        key=key,
        subspace_scaling=subspace_scaling,
        scaling=scaling,
        mask=mask,
    )
    outcome = SOLVERS[method](problem, maxiter, options)
    return _result(problem, outcome, method, maxiter, t0)


def _solver_settings(
    maxiter: Any, method: str, scaling: str, driver: str, pga_step: float
) -> tuple[int, str, SolverOptions]:
    """(maxiter, the method that runs, SolverOptions), validated before any evaluation."""
    maxiter = check_int("maxiter", maxiter, 1)
    method = resolved_method(method, scaling)
    check_choice("scaling", scaling, SCALINGS)
    _check_normalized(method, scaling)
    options = SolverOptions(driver=driver, pga_step=pga_step)
    if method == "lbfgsb":
        _lbfgsb_driver(driver)  # a driver this SciPy lacks fails before any evaluation
    return maxiter, method, options


def maximize(
    problem: SharpnessProblem,
    *,
    maxiter: int = 10,
    method: str = "auto",
    driver: str = "auto",
    pga_step: float = 0.5,
) -> SharpnessResult:
    """Run the solver `method` (`resolved_method`; one of `SOLVERS`) for `maxiter` iterations on
    a fresh `problem` from `sharpness_problem` and report it as `sharpness` does.

    `sharpness(loss_fn, params, eps, **kw)` is `maximize(sharpness_problem(loss_fn, params, eps,
    ...), ...)`; keskar_repro.notions builds other boxes (eta, mask) and maximizes them here.
    The result's `seconds` is the problem's setup time plus this call's. A problem is solved
    once: its best point and counters carry over to a second call.
    """
    t0 = time.perf_counter() - problem.seconds_setup
    maxiter, method, options = _solver_settings(maxiter, method, problem.scaling, driver, pga_step)
    outcome = SOLVERS[method](problem, maxiter, options)
    return _result(problem, outcome, method, maxiter, t0)


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
    if "method" in kwargs:
        raise ValueError("method is set by compare_methods; do not pass it")
    lb = sharpness(loss_fn, params, epsilon, method="lbfgsb", **kwargs)
    pg = sharpness(loss_fn, params, epsilon, method="pga", **kwargs)
    larger = "tie" if lb.f_max == pg.f_max else ("lbfgsb" if lb.f_max > pg.f_max else "pga")
    return MethodComparison(lb, pg, larger, lb.value - pg.value)
