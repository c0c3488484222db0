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
