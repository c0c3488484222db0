"""Lanczos that stops on a tolerance: the loop on the device, the Ritz values on the host.

For a symmetric operator given as a flat `matvec`, Lanczos with full reorthogonalisation from
a Gaussian start vector builds H Q_j = Q_j T_j + beta_j q_{j+1} e_j^T; the Ritz values theta_i
= eig(T_j) (eigenvectors s_i) approximate the extreme eigenvalues, and the residual bound r_i =
beta_j |e_j^T s_i| = ||H y_i - theta_i y_i|| (y_i = Q_j s_i) puts an eigenvalue of H within r_i
of theta_i (for symmetric H, ||(H - theta) y|| >= min_l |lambda_l - theta| for any unit y);
separated by a gap g from the rest of the spectrum, the error is also below r_i^2 / g.

`lanczos_until` runs inside a compiled program (`lax.while_loop`) and stops after the first
step j at which every wanted r_i <= max(tol |theta_i|, u max|theta|), u the dtype's machine
epsilon, or after m steps (tol = 0: all m). The stop test runs on the device: T_j is embedded
in the m x m array with a diagonal block beyond its Gershgorin bound, whose eigenvectors are
told apart by having no weight on T_j's rows. Each new vector is orthogonalised twice against
all previous ones ("twice is enough"). When beta_j falls to rounding level (an invariant
subspace: few distinct eigenvalues in the start vector's Krylov space), Lanczos goes on from a
fresh random vector orthogonal to Q_j with beta_j = 0 in T, so multiple eigenvalues are found
with their multiplicities.

`ritz` takes T to the host in float64 and returns the Ritz values, the wanted ones, their
residual bounds and the rounding floor u max|theta|: r_i is the bound of the computed T_j in
exact arithmetic and omits the matvecs' own rounding (r_i reaches 1e-30 after n steps while
the true error stays near u |lambda|), so callers state max(r_i, floor). `ritz_vectors` forms
the unit Ritz vectors from the basis. keskar_repro.measures.curvature runs this on the Hessian.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["WHICH_CODES", "Ritz", "lanczos_until", "ritz", "ritz_vectors"]


WHICH_CODES = {"largest": 0, "smallest": 1, "magnitude": 2}  # `which` as a traced integer


def _converged(alpha, beta, j, k, which, tol, u) -> jax.Array:
    """Whether the k wanted Ritz values of T_j (the leading j x j block of alpha, beta) have
    residual bounds <= max(tol |theta_i|, u max |theta|) (module docstring). k and `which`
    (a WHICH_CODES value) are traced, so one compiled loop serves every k and end."""
    m = alpha.shape[0]
    idx = jnp.arange(m)
    far = jnp.max(jnp.abs(alpha)) + 2 * jnp.max(jnp.abs(beta)) + 1
    t = jnp.diag(jnp.where(idx < j, alpha, far))
    t += jnp.diag(jnp.where(idx[:-1] < j - 1, beta[:-1], 0), 1)
    theta, s = jnp.linalg.eigh(t + jnp.triu(t, 1).T, symmetrize_input=False)
    real = jnp.sum(jnp.where(idx[:, None] < j, s, 0) ** 2, axis=0) > 0.5
    residual = beta[j - 1] * jnp.abs(s[j - 1])
    floor = u * jnp.max(jnp.where(real, jnp.abs(theta), 0))
    score = jnp.stack([theta, -theta, jnp.abs(theta)])[which]
    rank = jnp.argsort(jnp.argsort(-jnp.where(real, score, -jnp.inf)))
    ok = residual <= jnp.maximum(tol * jnp.abs(theta), floor)
    return (j >= k) & jnp.all(jnp.where(real & (rank < k), ok, True))


def lanczos_until(
    matvec: Callable[[jax.Array], jax.Array],
    key: jax.Array,
    n: int,
    dtype,
    tol,
    k,
    which,
    *,
    m: int,
    keep_basis: bool = False,
) -> tuple:
    """(alpha (m,), beta (m,), steps, the basis (m, n) or None) of Lanczos on `matvec` from a
    standard Gaussian start vector drawn from `key` (module docstring); traceable, for use
    inside a compiled program (tol, k and `which`, a WHICH_CODES value, may be traced).
    Entries of alpha and beta past `steps` are zero."""
    u = jnp.finfo(dtype).eps

    def orthogonalise(w, basis):
        for _ in range(2):
            w = w - basis.T @ (basis @ w)
        return w

    def step(state):
        j, basis, alpha, beta, _ = state
        q = basis[j]
        w = matvec(q).astype(dtype)
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
        done = _converged(alpha, beta, j + 1, k, which, tol, u)
        return j + 1, basis.at[j + 1].set(q_next), alpha, beta, done

    v0 = jax.random.normal(key, (n,), dtype)
    basis = jnp.zeros((m + 1, n), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    state = (0, basis, jnp.zeros(m, dtype), jnp.zeros(m, dtype), False)

    def going_on(s):
        return (s[0] < m) & ~(s[4] & (tol > 0))

    steps, basis, alpha, beta, _ = jax.lax.while_loop(going_on, step, state)
    return alpha, beta, steps, (basis[:m] if keep_basis else None)


@dataclasses.dataclass(frozen=True)
class Ritz:
    """The Ritz values of T_steps and what is read from them (host, float64).

    theta      every Ritz value, ascending.
    s          T's eigenvectors (columns), in theta's order.
    pick       indices of the k wanted values: descending for "largest" and "magnitude" (by
               |.|), ascending for "smallest".
    bounds     r_i for every Ritz value.
    floor      u max|theta|, the rounding floor of the dtype.
    converged  whether every wanted r_i <= max(tol |theta_i|, floor).
    steps      the Lanczos steps taken.
    """

    theta: np.ndarray
    s: np.ndarray
    pick: np.ndarray
    bounds: np.ndarray
    floor: float
    converged: bool
    steps: int


def ritz(alpha, beta, steps: int, k: int, which: str, tol: float, dtype) -> Ritz:
    """The `Ritz` of the first `steps` entries of alpha and beta."""
    alpha, beta = (np.asarray(v[:steps], np.float64) for v in (alpha, beta))
    t_m = np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)
    theta, s = np.linalg.eigh(t_m)
    bounds = beta[-1] * np.abs(s[-1, :])
    floor = float(np.finfo(dtype).eps * np.max(np.abs(theta)))
    order = {"largest": np.argsort(-theta), "smallest": np.argsort(theta)}
    order["magnitude"] = np.argsort(-np.abs(theta))
    pick = order[which][:k]
    converged = bool(np.all(bounds[pick] <= np.maximum(tol * np.abs(theta[pick]), floor)))
    return Ritz(theta, s, pick, bounds, floor, converged, steps)


def ritz_vectors(basis: np.ndarray, r: Ritz) -> np.ndarray:
    """(k, n): the wanted unit Ritz vectors Q s_i from the (m, n) basis of `lanczos_until`."""
    q = np.asarray(basis)[: r.steps]
    flat = r.s[:, r.pick].T.astype(q.dtype) @ q
    return flat / np.linalg.norm(flat, axis=1, keepdims=True)
