"""The random subspace A and the box C_eps of Metric 2.1: drawing A, A^+ x, the bounds."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy
import scipy.linalg
import scipy.optimize

from keskar_repro.measures.checks import (
    check_choice,
    check_int,
    check_key,
    check_positive,
)
from keskar_repro.measures.options import SUBSPACE_SCALINGS

_HIGHEST = jax.lax.Precision.HIGHEST  # no TF32/bf16 shortcuts in the n x p products on GPUs

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


@partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _uniform_matrix(key: jax.Array, n: int, p: int, dtype: Any, low: float) -> jax.Array:
    return jax.random.uniform(key, (n, p), dtype=dtype, minval=low, maxval=1.0)


@partial(jax.jit, donate_argnums=0)
def _unit_columns(a: jax.Array) -> jax.Array:
    # The input buffer is donated, so the normalised matrix reuses it: one n x p matrix at a time.
    return a / jnp.sqrt(jnp.sum(a * a, axis=0, keepdims=True))


@partial(jax.jit, donate_argnums=0)
def _unit_rows(a: jax.Array) -> jax.Array:
    return a / jnp.sqrt(jnp.sum(a * a, axis=1, keepdims=True))


@jax.jit
def _gram(a: jax.Array) -> jax.Array:
    return jnp.matmul(a.T, a, precision=_HIGHEST)


@jax.jit
def _times(a: jax.Array, m: jax.Array) -> jax.Array:
    return jnp.matmul(a, m.astype(a.dtype), precision=_HIGHEST)


def _gram64(a: jax.Array) -> np.ndarray:
    """A^T A (p x p) computed on A's device, returned in float64."""
    return np.asarray(jax.device_get(_gram(a)), np.float64)


def _orthonormal(key: jax.Array, n: int, p: int, dtype: Any) -> jax.Array:
    """Q = G R^-1 with R^T R = G^T G (Cholesky QR of a Gaussian G): orthonormal columns spanning
    G's. G has condition number ~ 1 + 2 sqrt(p / n), so one pass is orthonormal to rounding."""
    g = _gaussian_matrix(key, n, p, dtype)
    r = np.linalg.cholesky(_gram64(g)).T
    return _times(g, jnp.asarray(np.linalg.inv(r)))


def _smoothout(key: jax.Array, n: int, p: int, dtype: Any) -> jax.Array:
    """A = pinv(B^T) = B (B^T B)^-1, B = U[-1, 1) with unit columns: SmoothOut's construction
    (wenwei202/smoothout, measure_sharpness.py), whose A^+ = B^T is the random matrix drawn."""
    b = _unit_columns(_uniform_matrix(key, n, p, dtype, -1.0))
    return _times(b, jnp.asarray(np.linalg.inv(_gram64(b))))


# name -> draw(key, n, p, dtype); the names are options.SUBSPACE_SCALINGS, in its order
_DRAWS: dict[str, Any] = {
    "unit": lambda key, n, p, dtype: _unit_columns(_gaussian_matrix(key, n, p, dtype)),
    "gaussian": _gaussian_matrix,
    "uniform": lambda key, n, p, dtype: _uniform_matrix(key, n, p, dtype, 0.0),
    "uniform_pm1": lambda key, n, p, dtype: _uniform_matrix(key, n, p, dtype, -1.0),
    "rows": lambda key, n, p, dtype: _unit_rows(_gaussian_matrix(key, n, p, dtype)),
    "orthonormal": _orthonormal,
    "smoothout": _smoothout,
}


def random_subspace(
    key: jax.Array, n: int, p: int, *, scaling: str = "gaussian", dtype: Any = jnp.float32
) -> jax.Array:
    """The n x p matrix A spanning a random p-dimensional subspace of the parameter space.

    The paper says only that A is "randomly generated"; `scaling` names the construction
    (options.SUBSPACE_SCALINGS):

    - "gaussian" (default): i.i.d. N(0, 1) entries (`jax.random.normal(key, (n, p), dtype)`),
      columns of norm ~ sqrt(n);
    - "unit": the same Gaussian matrix, every column divided by its Euclidean norm;
    - "uniform": i.i.d. U[0, 1) entries, as `numpy.random.rand(n, p)` draws them (mean 1/2,
      variance 1/12: the columns share a large component along the all-ones direction);
    - "uniform_pm1": i.i.d. U[-1, 1) entries (mean 0, variance 1/3);
    - "rows": the Gaussian matrix with every row (the p coefficients of one parameter) divided
      by its norm;
    - "orthonormal": orthonormal columns (A^T A = I), the Gaussian matrix's Cholesky QR;
    - "smoothout": A = pinv(B^T) with B = U[-1, 1) with unit columns, so A^+ = B^T: the
      construction of SmoothOut's public reimplementation of Metric 2.1.

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
    convention the package's tables report, hence the default; the choice is recorded in every
    result.

    `key` is a JAX key or an int seed. The same key, n, p, scaling and dtype rebuild the same
    matrix (JAX's counter-based PRNG; the last bits of a deviate may differ between CPU and GPU
    backends). Memory: "gaussian", "unit", "uniform", "uniform_pm1" and "rows" keep one n x p
    matrix alive (585 MB in float32 for F1, p = 100); "orthonormal" and "smoothout" two while
    they multiply by a p x p matrix.
    """
    key = check_key(key, "random_subspace (the key draws A)")
    n = check_int("n", n, 1)
    p = check_int("p", p, 1, n)
    check_choice("scaling", scaling, SUBSPACE_SCALINGS)
    return _DRAWS[scaling](key, n, p, jnp.dtype(dtype))


def given_subspace(A: Any, n: int, dtype: Any) -> jax.Array:
    """A researcher's own n x p matrix as the subspace (`sharpness(..., A=A)`), in `dtype`:
    ValueError unless it is 2-D with n rows, 1 <= p <= n columns and finite entries (full
    column rank is checked where A^+ x is solved, `pinv_coefficients`)."""
    a = jnp.asarray(A, dtype=dtype)
    if a.ndim != 2 or a.shape[0] != n or not 1 <= a.shape[1] <= n:
        raise ValueError(
            f"A must be an (n, p) matrix with n = {n} rows (the parameters measured) and "
            f"1 <= p <= n columns, got shape {tuple(a.shape)}"
        )
    if not bool(jnp.all(jnp.isfinite(a))):
        raise ValueError("A must have finite entries")
    return a


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
    eta = 1 (default) is Metric 2.1's box; eta = 0 the adaptive box of
    keskar_repro.measures.notions. The box is symmetric: lower = -upper.
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
