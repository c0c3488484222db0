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
- Top eigenvalues (`top_eigenvalues`): Lanczos with full reorthogonalisation, stopped once
  every wanted Ritz value theta_i has a residual bound r_i = ||H y_i - theta_i y_i|| <=
  max(tol |theta_i|, u max|theta|) (keskar_repro.measures.lanczos: the loop, the stop test on
  the device, restarts after an invariant subspace). An eigenvalue of H lies within r_i of
  theta_i; r_i omits the HVPs' own rounding, so every result states errors_i = max(r_i, u
  max|theta|). Neither proves that the eigenvalue is the i-th largest: an eigenvector almost
  orthogonal to the start vector is found late.
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
`top_eigenvalues` (keskar_repro.measures.lanczos: it stops on its tolerance, which matfree's
fixed-step tridiagonalisation cannot), the quadrature nodes and weights from T_m (an m x m
eigendecomposition on the host in float64), and the loop over SLQ probes
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
    split_data,
    with_data,
)
from keskar_repro.measures.curvature_results import (
    CurvatureReport,
    EigenvalueResult,
    SpectralDensity,
    TraceResult,
)
from keskar_repro.measures.lanczos import WHICH_CODES, Ritz, lanczos_until, ritz, ritz_vectors
from keskar_repro.measures.pytree import Mask, Partition, partition

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
# Running the compiled estimators (their results: keskar_repro.measures.curvature_results)
# --------------------------------------------------------------------------------------------


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


@partial(jax.jit, static_argnames=("loss_fn", "part", "m", "keep_basis"))
def _lanczos(point, fixed, data, key, tol, k, which, *, loss_fn, part: Partition, m: int,
             keep_basis: bool):  # fmt: skip
    """`lanczos.lanczos_until` on the HVP at the point (alpha, beta, steps, basis or None)."""
    matvec = partial(_hvp_flat, loss_fn, part)
    return lanczos_until(
        lambda q: matvec(q, point, fixed, data), key, part.n, part.dtype, tol, k, which,
        m=m, keep_basis=keep_basis,
    )  # fmt: skip


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
        _lanczos, (*args, np.asarray(tol, part.dtype), np.int32(k), np.int32(WHICH_CODES[which])),
        **static, part=part, m=m, keep_basis=vectors,
    )  # fmt: skip
    _check_finite("top_eigenvalues", alpha, beta)
    r = ritz(alpha, beta, int(steps), k, which, tol, part.dtype)
    return EigenvalueResult(
        **_report(part, r.steps, t0, t_compile),
        eigenvalues=r.theta[r.pick],
        residuals=r.bounds[r.pick],
        errors=np.maximum(r.bounds[r.pick], r.floor),
        k=k,
        which=which,
        tol=float(tol),
        converged=r.converged,
        ritz_values=r.theta,
        vectors=None if basis is None else _ritz_vectors(part, basis, r, params),
    )


def _ritz_vectors(part: Partition, basis: np.ndarray, r: Ritz, params: Any) -> tuple:
    """The wanted unit Ritz vectors (`lanczos.ritz_vectors`), each as a pytree like params
    (held leaves zero), on the host."""
    return tuple(part.perturbation(v, params) for v in ritz_vectors(basis, r))


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
