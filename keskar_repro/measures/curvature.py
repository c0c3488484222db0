"""Curvature of a loss at a point: Hessian-vector products, top eigenvalues, trace, spectrum.

H = grad^2 f(x) is the Hessian of f = loss_fn at x = params, over the variables: the floating
leaves of the pytree (float16, bfloat16, float32 or float64), flattened in
`jax.tree_util.tree_leaves` order into n scalars. Non-floating leaves (integer counters, RNG
keys) are held fixed: loss_fn sees them unchanged and H has no rows for them; every result
counts them apart in `leaf_counts`, by the same rule as the sharpness notions
(`keskar_repro.measures.pytree.partition`). Like `keskar_repro.measures.sharpness`, this module
needs nothing of our model or training code (it imports only keskar_repro.measures.checks and
.pytree) and works on any JAX-differentiable `loss_fn(params) -> scalar`. Nothing here forms an n x
n matrix.

- Hessian-vector product (`hvp_fn`), forward-over-reverse (Pearlmutter 1994):

      H v = d/dt grad f(x + t v) |_{t=0} = jax.jvp(jax.grad(f), (x,), (v,))[1].

  On the package's exact full-split objective (`keskar_repro.training.objective.make_loss_fn`, a
  `jax.custom_vjp` whose gradient is accumulated chunk by chunk) this differentiates that
  accumulation in forward mode: one `lax.scan` over the chunks, each step one chunk's forward
  and backward pass and their tangents, so peak memory is one chunk's, under every BN policy.
  On F1 one HVP costs 2.43x a value-and-gradient in matmul FLOPs (8F - 5 d0 d1 against
  3F - d0 d1 multiply-adds per example; measured: benchmarks/README.md).
- Top eigenvalues (`top_eigenvalues`): Lanczos with full reorthogonalisation from a
  Gaussian start vector, H Q_j = Q_j T_j + beta_j q_{j+1} e_j^T; the Ritz values theta_i =
  eig(T_j) (eigenvectors s_i) approximate the extreme eigenvalues. Residual bound: r_i =
  beta_j |e_j^T s_i| = ||H y_i - theta_i y_i|| for the unit Ritz vector y_i, and for a
  symmetric H the interval [theta_i - r_i, theta_i + r_i] contains an eigenvalue of H (because
  ||(H - theta) y|| >= min_l |lambda_l - theta| for any unit y); where theta_i is separated
  from the rest of the spectrum by a gap g, the error is also below r_i^2 / g. Lanczos stops
  after the first step j at which every wanted r_i <= max(tol |theta_i|, u max|theta|), u the
  work dtype's machine epsilon (at most num_matvecs steps). The stop test runs on the device:
  T_j is embedded in the m x m array with a diagonal block beyond its Gershgorin bound, whose
  eigenvectors are told apart by having no weight on T_j's rows. r_i is the bound of the
  computed T_j in exact arithmetic; the HVPs' own rounding is not in it (r_i reaches 1e-30
  after n steps while the true error stays near u |lambda|), so every result also states
  errors_i = max(r_i, u max|theta|), the floor that rounding leaves. Neither proves that the
  eigenvalue is the i-th largest: an eigenvector almost orthogonal to the start vector is found
  late. When beta_j falls to rounding level (an invariant subspace: H has few distinct
  eigenvalues in the start vector's Krylov space) Lanczos goes on from a fresh random vector
  orthogonal to Q_j, so multiple eigenvalues are found with their multiplicities.
- Trace (`hessian_trace`): Hutchinson (1990), tr H = E[z^T H z] for Rademacher z, the mean of
  m probes, stderr = sample std (ddof 1) / sqrt(m) (exactly, Var z^T H z = 2 (||H||_F^2 -
  sum_i H_ii^2): a diagonal H is measured without error); or XTrace (Epperly, Tropp & Webber
  2024, a Hutch++-type estimator): with m Gaussian probes and 2m HVPs it takes the trace of
  the projection of H on range(H Omega) exactly and Hutchinson's estimate of the rest, averaged
  over the m leave-one-out choices, with stderr = std of those m estimates (ddof 1) /
  sqrt(m). XTrace is exact when rank H < m, and its error falls like 1/m instead of
  1/sqrt(m) when a few large eigenvalues carry most of the trace; with 2m >= n it forms H
  from n HVPs and returns its exact trace.
- Spectral density (`spectral_density`): stochastic Lanczos quadrature (Golub & Meurant 1994;
  Lin, Saad & Yang 2016; Ghorbani, Krishnan & Xiao 2019). For a Rademacher probe z (||z||^2 =
  n), m Lanczos steps from q1 = z / sqrt(n) give T_m = S diag(theta) S^T; nodes theta_j and
  weights tau_j = S_1j^2 are the Gauss quadrature of the spectral measure sum_i (q1 . u_i)^2
  delta(t - lambda_i), exact for polynomials of degree <= 2m - 1: sum_j tau_j theta_j^k =
  q1^T H^k q1, whose expectation is tr(H^k) / n. Averaged over P probes this estimates the
  density phi(t) = (1/n) sum_i delta(t - lambda_i); `SpectralDensity.density` smooths it with a
  Gaussian of width sigma, `SpectralDensity.moment(k)` gives (1/n) tr(H^k) with its standard
  error over the probes.

Linear algebra: matfree (Kraemer et al., tested with 0.6.3), chosen because it is maintained,
pure JAX (so a whole estimator is one compiled program, on any device) and takes any matvec,
pytree or flat; JAX itself has no Lanczos (jax.experimental.sparse.linalg.lobpcg_standard
needs a block of matvecs at once and is experimental). From matfree: the Lanczos
tridiagonalisation of SLQ (`decomp.tridiag_sym`, full reorthogonalisation, a fixed number of
steps) and the Hutchinson and XTrace estimators with their samplers (`stochtrace`). Written
here: the split of params into variables and fixed leaves, the HVP, the Lanczos of
`top_eigenvalues` (a `lax.while_loop` that stops on its tolerance, which matfree's fixed-step
tridiagonalisation cannot), the Ritz values, residual bounds and quadrature nodes and weights
from T_m (an m x m eigendecomposition on the host in float64; matfree's `eig.eigh_partial`
returns every Ritz vector but no residual), and the loop over SLQ probes
(`lax.map`). matfree's estimators `vmap` the matvec over all probes, which for F1 would hold
every probe's activations at once; the HVP given to them is a
`jax.custom_batching.sequential_vmap`, so the probes run one after another and memory is one
HVP's.

Precision: each HVP runs in the loss's own dtypes (each leaf's tangent in the leaf's dtype);
Krylov vectors, reorthogonalisation and probe products are in the work dtype, the widest
variable dtype but at least float32 (`dtype` in every result). Lanczos keeps its m + 1 vectors:
(m + 1) n scalars of the work dtype (F1, the default m = 50: 0.30 GB in float32); XTrace keeps
about 4 m n.

Every estimator is one jit-compiled call (the Lanczos and probe loops are `lax` loops on the
device; the only host copies are the inputs and the small outputs: T_m and a few scalars). It
is compiled once per loss_fn (a static argument: JAX's cache keeps a reference to it), params
structure and dtypes, and setting; a second call, e.g. at another checkpoint with the same
loss_fn, reuses it. `seconds` includes the compilation and `seconds_compile` says how much of
it that was. Randomness comes only from the explicit `key`; the same key and arguments give
the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matfree import decomp, stochtrace

from keskar_repro.measures.checks import (
    call,
    check_choice,
    check_int,
    check_key,
    check_loss_fn,
    check_positive,
    jsonable,
    split_data,
    with_data,
)
from keskar_repro.measures.pytree import LeafCounts, Mask, Partition, partition

__all__ = [
    "TRACE_METHODS",
    "WHICH",
    "CurvatureReport",
    "EigenvalueResult",
    "TraceResult",
    "SpectralDensity",
    "hvp_fn",
    "top_eigenvalues",
    "hessian_trace",
    "spectral_density",
]

TRACE_METHODS: tuple[str, ...] = ("hutchinson", "xtrace")
WHICH: tuple[str, ...] = ("largest", "smallest", "magnitude")


# --------------------------------------------------------------------------------------------
# Argument checks (every one raises a ValueError that names the argument)
# --------------------------------------------------------------------------------------------


def _hvp_leaves(
    loss_fn: Callable, part: Partition, var: list, fixed: list, data: Any, tangent: list
) -> list:
    """H v over the variable leaves: jvp of grad, forward over reverse."""

    def grad_var(var_leaves):
        return jax.grad(lambda w: call(loss_fn, part.merge(w, fixed), data))(var_leaves)

    tangent = [t.astype(d) for t, d in zip(tangent, part.dtypes, strict=True)]
    return jax.jvp(grad_var, (var,), (tangent,))[1]


def _hvp_flat(
    loss_fn: Callable, part: Partition, v: jax.Array, point: jax.Array, fixed: list, data: Any
) -> jax.Array:
    """H v for flat v at the flat point, in the work dtype (the matvec given to matfree)."""
    hv = _hvp_leaves(loss_fn, part, part.unravel(point), fixed, data, part.unravel(v))
    return part.ravel(hv)


@partial(jax.jit, static_argnames=("loss_fn", "part"))
def _hvp_compiled(var: list, fixed: list, data: Any, tangent: list, *, loss_fn, part: Partition):
    return _hvp_leaves(loss_fn, part, var, fixed, data, tangent)


def hvp_fn(
    loss_fn: Callable[..., jax.Array], params: Any, *, mask: Mask = None, data: Any = None
) -> Callable[[Any], Any]:
    """`hvp(v) -> H v`, the Hessian-vector product of `loss_fn` at `params`, jit-compiled.

    v is a pytree with params' structure; its floating leaves are the direction (cast to the
    dtypes of params' leaves) and its other leaves are ignored. H v has params' structure: the
    variables' leaves in params' dtypes, and a `jax.dtypes.float0` zero for every fixed leaf
    (as `jax.grad(..., allow_int=True)` returns there). Computed as jax.jvp(jax.grad(f)) (module
    docstring): one forward and one backward pass with their tangents, never the matrix. It
    compiles once per loss_fn, params structure and dtypes of v; params is an argument of the
    compiled function, not a constant in it (and so is `data`: with it, `loss_fn(params, data)`
    is differentiated). `mask` restricts the variables to some leaves (the others are held,
    with float0 zeros in H v).
    """
    part, var, fixed, fn, data = _variables(loss_fn, params, mask, data)
    zeros = [np.zeros(np.shape(leaf), jax.dtypes.float0) for leaf in fixed]

    def hvp(v: Any) -> Any:
        hv = _hvp_compiled(var, fixed, data, part.split(v)[0], loss_fn=fn, part=part)
        return part.merge(hv, zeros)

    return hvp


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


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


def _report(part: Partition, num_matvecs: int, t0: float, t_compile: float) -> dict[str, Any]:
    return {
        "n_params": part.n,
        "leaf_counts": part.counts,
        "param_dtypes": tuple(sorted(set(part.dtypes))),
        "dtype": part.dtype,
        "num_matvecs": num_matvecs,
        "seconds": time.perf_counter() - t0,
        "seconds_compile": t_compile,
    }


def _run(jitted: Callable, args: tuple, **static: Any) -> tuple[Any, float]:
    """(jitted(*args, **static) on the host as numpy, seconds spent tracing and compiling it
    (~0 when JAX's cache has it))."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args, **static).compile()
    t_compile = time.perf_counter() - t0
    return jax.tree_util.tree_map(np.asarray, jax.device_get(compiled(*args))), t_compile


def _variables(loss_fn: Callable, params: Any, mask: Mask, data: Any) -> tuple:
    """(the partition of params (`pytree.partition`: the floating leaves `mask` selects; a
    ValueError if none), variable leaves, held leaves, the function to compile, its data on the
    device)."""
    part = partition(params, mask)
    loss_fn = with_data(loss_fn, data)
    check_loss_fn(loss_fn, params, hashable=True)
    var, fixed = part.split(params)
    fn, data = split_data(loss_fn)
    return part, var, fixed, fn, jax.tree_util.tree_map(jnp.asarray, data)


def _setup(
    loss_fn: Callable, params: Any, key: Any, mask: Mask, data: Any, what: str
) -> tuple[Partition, tuple, dict[str, Any]]:
    """The partition, the compiled estimator's arguments (flat point, held leaves, data, key)
    and its static loss_fn."""
    key = check_key(key, what)
    part, var, fixed, fn, data = _variables(loss_fn, params, mask, data)
    return part, (part.ravel(var), fixed, data, key), {"loss_fn": fn}


def _tridiag(m: int) -> Callable:
    """matfree's Lanczos: m steps, full reorthogonalisation, T_m as a dense m x m matrix."""
    return decomp.tridiag_sym(m, reortho="full", materialize=True, custom_vjp=False)


def _wanted(theta: jax.Array, real: jax.Array, k: int, which: str) -> jax.Array:
    """Indices of the k wanted Ritz values among `theta`, where only `real` ones count."""
    score = {"largest": theta, "smallest": -theta, "magnitude": jnp.abs(theta)}[which]
    return jnp.argsort(-jnp.where(real, score, -jnp.inf))[:k]


def _ritz_converged(alpha, beta, j, k: int, which: str, tol, floor_factor) -> jax.Array:
    """Whether the k wanted Ritz values of T_j (the leading j x j block of the tridiagonal
    alpha, beta) have residual bounds beta_j |e_j^T s_i| <= max(tol |theta_i|, u max |theta|).
    T_j is embedded in the full m x m matrix with a diagonal block far outside its spectrum
    (Gershgorin), whose eigenvectors (no weight on the first j coordinates) are left out."""
    m = alpha.shape[0]
    idx = jnp.arange(m)
    far = jnp.max(jnp.abs(alpha)) + 2 * jnp.max(jnp.abs(beta)) + 1
    t = jnp.diag(jnp.where(idx < j, alpha, far)) + jnp.diag(
        jnp.where(idx[:-1] < j - 1, beta[:-1], 0), 1
    )
    theta, s = jnp.linalg.eigh(t + jnp.triu(t, 1).T, symmetrize_input=False)
    real = jnp.sum(jnp.where(idx[:, None] < j, s, 0) ** 2, axis=0) > 0.5
    residual = beta[j - 1] * jnp.abs(s[j - 1])
    floor = floor_factor * jnp.max(jnp.where(real, jnp.abs(theta), 0))
    pick = _wanted(theta, real, k, which)
    ok = residual[pick] <= jnp.maximum(tol * jnp.abs(theta[pick]), floor)
    return (j >= k) & jnp.all(ok)


@partial(jax.jit, static_argnames=("loss_fn", "part", "m", "k", "which", "keep_basis"))
def _lanczos(
    point, fixed, data, key, tol, *, loss_fn, part: Partition, m: int, k: int, which, keep_basis
):
    """(alpha, beta, steps) of Lanczos with full reorthogonalisation from a Gaussian start
    vector, stopped after `steps` <= m steps once the k wanted Ritz values have converged to
    `tol` (`_ritz_converged`; tol = 0: all m steps). On breakdown (beta_j at rounding level:
    an invariant subspace found) it goes on from a fresh random vector orthogonal to the
    previous ones, with beta_j = 0 in T."""
    dtype, n = part.dtype, part.n
    u = jnp.finfo(dtype).eps
    matvec = partial(_hvp_flat, loss_fn, part)

    def orthogonalise(w, basis):
        for _ in range(2):  # twice is enough (Parlett's "twice is enough")
            w = w - basis.T @ (basis @ w)
        return w

    def step(state):
        j, basis, alpha, beta, _ = state
        q = basis[j]
        w = matvec(q, point, fixed, data).astype(dtype)
        a = jnp.vdot(q, w)
        w = orthogonalise(w - a * q, basis)
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(jnp.max(jnp.abs(alpha)), jnp.abs(a)) + jnp.max(beta)
        broke = b <= 10 * u * scale

        def fresh(_):
            r = orthogonalise(jax.random.normal(jax.random.fold_in(key, j + 1), (n,), dtype), basis)
            return r / jnp.linalg.norm(r)

        q_next = jax.lax.cond(broke, fresh, lambda _: w / b, None)
        b = jnp.where(broke, 0, b)
        alpha, beta = alpha.at[j].set(a), beta.at[j].set(b)
        done = _ritz_converged(alpha, beta, j + 1, k, which, tol, u)
        return j + 1, basis.at[j + 1].set(q_next), alpha, beta, done

    v0 = jax.random.normal(key, (n,), dtype)
    basis = jnp.zeros((m + 1, n), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    state = (0, basis, jnp.zeros(m, dtype), jnp.zeros(m, dtype), False)

    def going_on(s):
        return (s[0] < m) & ~(s[4] & (tol > 0))

    steps, basis, alpha, beta, _ = jax.lax.while_loop(going_on, step, state)
    return alpha, beta, steps, (basis[:m] if keep_basis else None)


@partial(jax.jit, static_argnames=("loss_fn", "part", "m", "method"))
def _trace(point, fixed, data, key, *, loss_fn: Callable, part: Partition, m: int, method: str):
    """(estimate of tr H, matfree's standard error with ddof 0) from m probes."""
    template = jnp.zeros((part.n,), part.dtype)
    if method == "hutchinson":
        estimator = stochtrace.estimator_monte_carlo_mean_and_sem(
            stochtrace.monte_carlo_trace(), stochtrace.sampler_signs(template, num=m)
        )
    else:
        estimator = stochtrace.estimator_leave_one_out_mean_and_sem(
            stochtrace.leave_one_out_xtrace(), stochtrace.sampler_normal(template, num=m)
        )
    matvec = partial(_hvp_flat, loss_fn, part)
    # One probe after another; but matfree forms H with jacfwd when 2m >= n (XTrace), through
    # which a sequential_vmap cannot pass (its loop gets no batched primal): n <= 2m HVPs are
    # vmapped then.
    if not (method == "xtrace" and 2 * m >= part.n):
        matvec = jax.custom_batching.sequential_vmap(matvec)
    return estimator(matvec, key, point, fixed, data)


@partial(jax.jit, static_argnames=("loss_fn", "part", "p", "m"))
def _quadrature(point, fixed, data, key, *, loss_fn: Callable, part: Partition, p: int, m: int):
    """T_m of each of p Rademacher probes (probe l from fold_in(key, l)), one after another."""
    matvec = partial(_hvp_flat, loss_fn, part)

    def one_probe(probe_key):
        z = jax.random.rademacher(probe_key, point.shape, part.dtype)
        return _tridiag(m)(matvec, z, point, fixed, data).J_small

    keys = jax.vmap(partial(jax.random.fold_in, key))(jnp.arange(p))
    return jax.lax.map(one_probe, keys)


def _check_finite(name: str, *arrays: np.ndarray) -> None:
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise ValueError(f"{name}: non-finite Hessian-vector products at params")


# --------------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------------


def top_eigenvalues(
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    *,
    key: Any = None,
    k: int = 1,
    tol: float = 1e-3,
    num_matvecs: int | None = None,
    which: str = "largest",
    vectors: bool = False,
    mask: Mask = None,
    data: Any = None,
) -> EigenvalueResult:
    """The k extreme eigenvalues of the Hessian of `loss_fn` at `params`, by Lanczos.

    Lanczos with full reorthogonalisation from a standard Gaussian start vector drawn from
    `key`, one HVP per step, stopped as soon as each of the k wanted Ritz values theta_i has
    a residual bound r_i <= tol |theta_i| (or has reached the rounding floor u max|theta|),
    and after at most num_matvecs (m) steps (default min(n, max(50, 3k))); tol=0 runs all m
    steps. r_i bounds the distance to an eigenvalue; for an eigenvalue separated by a gap g
    from the rest of the spectrum the error is also below r_i^2 / g, so the default tol =
    1e-3 usually gives eigenvalues to float32 accuracy. which="largest" (default) returns the
    k largest Ritz values, "smallest" the k smallest, "magnitude" the k largest in absolute
    value, with their residual bounds and errors (`EigenvalueResult`); with vectors=True also
    their unit Ritz vectors as pytrees like params (the Lanczos basis is then copied to the
    host once: m vectors of n scalars). Memory: m + 1 vectors of n scalars. The loop runs on
    the device (`lax.while_loop`), the stop test included.
    Errors (ValueError): no key, k < 1, m outside [k, n], a negative tol, an unknown `which`,
    a non-scalar loss, no floating leaves, non-finite HVPs.
    """
    t0 = time.perf_counter()
    check_choice("which", which, WHICH)
    tol = check_positive("tol", tol, zero=True)
    part, args, static = _setup(loss_fn, params, key, mask, data, "top_eigenvalues (Lanczos)")
    k = check_int("k", k, 1, part.n)
    m = min(part.n, max(50, 3 * k)) if num_matvecs is None else num_matvecs
    m = check_int("num_matvecs", m, k, part.n)
    (alpha, beta, steps, basis), t_compile = _run(
        _lanczos, (*args, np.asarray(tol, part.dtype)), **static, part=part, m=m, k=k,
        which=which, keep_basis=vectors,
    )  # fmt: skip
    _check_finite("top_eigenvalues", alpha, beta)
    steps = int(steps)
    alpha, beta = alpha[:steps].astype(np.float64), beta[:steps].astype(np.float64)
    t_m = np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)
    theta, s = np.linalg.eigh(t_m)  # steps x steps, on the host in float64
    bounds = beta[-1] * np.abs(s[-1, :])
    floor = np.finfo(part.dtype).eps * np.max(np.abs(theta))
    order = {"largest": np.argsort(-theta), "smallest": np.argsort(theta)}
    order["magnitude"] = np.argsort(-np.abs(theta))
    pick = order[which][:k]
    return EigenvalueResult(
        **_report(part, steps, t0, t_compile),
        eigenvalues=theta[pick],
        residuals=bounds[pick],
        errors=np.maximum(bounds[pick], floor),
        k=k,
        which=which,
        tol=float(tol),
        converged=bool(np.all(bounds[pick] <= np.maximum(tol * np.abs(theta[pick]), floor))),
        ritz_values=theta,
        vectors=None if basis is None else _ritz_vectors(part, basis[:steps], s[:, pick], params),
    )


def _ritz_vectors(part: Partition, basis: np.ndarray, s: np.ndarray, params: Any) -> tuple:
    """The unit Ritz vectors Q_j s_i (columns of s), each as a pytree like params (held leaves
    zero), on the host."""
    flat = s.T.astype(basis.dtype) @ basis  # (k, n)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    return tuple(part.perturbation(v, params) for v in flat)


def hessian_trace(
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    *,
    key: Any = None,
    num_samples: int = 10,
    method: str = "xtrace",
    mask: Mask = None,
    data: Any = None,
) -> TraceResult:
    """tr H of `loss_fn` at `params`, with its standard error (module docstring).

    method="xtrace" (default): matfree's XTrace with num_samples Gaussian probes (2
    num_samples HVPs; n HVPs and the exact trace when 2 num_samples >= n, num_samples then
    recorded as at most n),
    the estimator with the smaller error per HVP wherever a few large eigenvalues carry much
    of the trace, as at a network's minimizer. method="hutchinson": the mean of z^T H z over
    num_samples Rademacher probes drawn from `key` (num_samples HVPs). The probes run one
    after another; all of them are held at once (about 4 num_samples vectors of n scalars for
    XTrace, num_samples for Hutchinson). Errors (ValueError): no key, num_samples < 2, an
    unknown method, a non-scalar loss, no floating leaves, non-finite HVPs.
    """
    t0 = time.perf_counter()
    check_choice("method", method, TRACE_METHODS)
    part, args, static = _setup(loss_fn, params, key, mask, data, "hessian_trace (its probes)")
    m = check_int("num_samples", num_samples, 2)
    if method == "xtrace":
        m = min(m, part.n)  # 2m >= n: H is formed from n HVPs, its trace exact
    num_matvecs = m if method == "hutchinson" else min(part.n, 2 * m)  # n: H formed, exact
    (value, sem), t_compile = _run(_trace, args, **static, part=part, m=m, method=method)
    _check_finite("hessian_trace", value, sem)
    return TraceResult(
        **_report(part, num_matvecs, t0, t_compile),
        value=float(value),
        stderr=float(sem) * math.sqrt(m / (m - 1)),  # matfree's std has ddof 0
        method=method,
        num_samples=m,
    )


def spectral_density(
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    *,
    key: Any = None,
    num_probes: int = 4,
    num_matvecs: int = 50,
    mask: Mask = None,
    data: Any = None,
) -> SpectralDensity:
    """The spectral density of the Hessian of `loss_fn` at `params`, by stochastic Lanczos
    quadrature (module docstring).

    num_probes Rademacher probes (probe l from `jax.random.fold_in(key, l)`), each run through
    num_matvecs (m, at most n) Lanczos steps with full reorthogonalisation, one probe after
    another (`lax.map`): P m HVPs, memory m vectors of n scalars. The result holds the nodes
    and weights; `density(grid, sigma)` and `moment(k)` evaluate them. Errors (ValueError): no
    key, num_probes < 1, m outside [1, n], a non-scalar loss, no floating leaves, non-finite
    HVPs.
    """
    t0 = time.perf_counter()
    part, args, static = _setup(loss_fn, params, key, mask, data, "spectral_density (its probes)")
    p = check_int("num_probes", num_probes, 1)
    m = check_int("num_matvecs", num_matvecs, 1, part.n)
    t_m, t_compile = _run(_quadrature, args, **static, part=part, p=p, m=m)
    _check_finite("spectral_density", t_m)
    nodes, s = np.linalg.eigh(t_m.astype(np.float64))  # P x m x m, on the host in float64
    weights = s[:, 0, :] ** 2
    return SpectralDensity(
        **_report(part, p * m, t0, t_compile),
        nodes=nodes,
        weights=weights,
        num_probes=p,
        lanczos_steps=m,
    )
