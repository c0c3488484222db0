"""keskar_repro.measures.subspace: every construction of the random matrix A (the moments of
its distribution, its defining identity), A^+ x against a dense solve, and a subspace of the
caller's own through `sharpness(..., A=A)`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from keskar_repro.measures.options import SUBSPACE_SCALINGS
from keskar_repro.measures.subspace import _DRAWS, pinv_coefficients, random_subspace
from keskar_repro.sharpness import sharpness

N, P = 40_000, 4  # 160,000 entries: a sample mean is within 5e-3 of 1/2 at ~7 sigma


def draw(scaling: str, n: int = N, p: int = P, dtype=jnp.float32) -> np.ndarray:
    return np.asarray(random_subspace(jax.random.key(7), n, p, scaling=scaling, dtype=dtype))


def test_every_name_has_one_construction():
    assert tuple(_DRAWS) == SUBSPACE_SCALINGS


@pytest.mark.parametrize(
    "scaling, low, high, mean, var",
    [
        ("gaussian", -np.inf, np.inf, 0.0, 1.0),
        ("uniform", 0.0, 1.0, 0.5, 1 / 12),  # numpy.random.rand's distribution
        ("uniform_pm1", -1.0, 1.0, 0.0, 1 / 3),
    ],
)
def test_iid_entries_have_their_distributions_moments(scaling, low, high, mean, var):
    a = draw(scaling).astype(np.float64)
    assert a.shape == (N, P) and low <= a.min() and a.max() < high
    sd_of_mean = np.sqrt(var / a.size)
    assert abs(a.mean() - mean) < 6 * sd_of_mean
    assert a.var() == pytest.approx(var, rel=0.02)
    # the columns are independent: their sample correlations are O(1 / sqrt(N))
    corr = np.corrcoef(a.T) - np.eye(P)
    assert np.abs(corr).max() < 6 / np.sqrt(N)


def test_unit_and_rows_normalise_the_gaussian_matrix():
    g = draw("gaussian").astype(np.float64)
    np.testing.assert_allclose(draw("unit"), g / np.linalg.norm(g, axis=0), rtol=2e-6)
    np.testing.assert_allclose(
        draw("rows"), g / np.linalg.norm(g, axis=1, keepdims=True), rtol=2e-6, atol=1e-7
    )


def test_orthonormal_columns_span_the_gaussian_matrix(x64):
    q = draw("orthonormal", 3000, 6, jnp.float64)
    g = draw("gaussian", 3000, 6, jnp.float64)
    np.testing.assert_allclose(q.T @ q, np.eye(6), atol=1e-12)
    r = q.T @ g  # g = q r with r upper triangular and a positive diagonal (Cholesky QR)
    np.testing.assert_allclose(q @ r, g, atol=1e-10)
    assert np.allclose(np.tril(r, -1), 0, atol=1e-10) and np.all(np.diag(r) > 0)


def test_orthonormal_in_float32_is_orthonormal_to_rounding():
    q = draw("orthonormal").astype(np.float64)
    np.testing.assert_allclose(q.T @ q, np.eye(P), atol=1e-5)


def test_smoothout_is_the_pseudo_inverse_of_unit_uniform_rows(x64):
    a = draw("smoothout", 3000, 6, jnp.float64)
    b_t = np.linalg.pinv(a)  # SmoothOut's random matrix A^+: rows U[-1, 1), normalised
    np.testing.assert_allclose(np.linalg.norm(b_t, axis=1), 1.0, rtol=1e-10)
    raw = b_t / np.abs(b_t).max(axis=1, keepdims=True)  # rescaled back: fills [-1, 1]
    assert raw.min() > -1 - 1e-12 and raw.max() <= 1 + 1e-12
    uniform = draw("uniform_pm1", 3000, 6, jnp.float64)
    expected = uniform / np.linalg.norm(uniform, axis=0)
    np.testing.assert_allclose(b_t.T, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("scaling", SUBSPACE_SCALINGS)
def test_pinv_coefficients_equal_a_dense_least_squares_solve(x64, scaling):
    a = draw(scaling, 500, 7, jnp.float64)
    x = np.random.default_rng(1).standard_normal(500)
    expected = np.linalg.lstsq(a, x, rcond=None)[0]
    np.testing.assert_allclose(pinv_coefficients(x, a), expected, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("scaling", SUBSPACE_SCALINGS)
def test_the_same_key_draws_the_same_matrix(scaling):
    np.testing.assert_array_equal(draw(scaling, 300, 3), draw(scaling, 300, 3))


def quadratic(params):
    return jnp.sum(params["w"] ** 2) + jnp.sum(jnp.sin(params["w"]))


def test_a_given_matrix_is_measured_as_the_drawn_one():
    params = {"w": jnp.linspace(-1.0, 1.0, 200)}
    key = jax.random.key(3)
    drawn = sharpness(quadratic, params, 1e-2, subspace_dim=5, key=key, subspace_scaling="uniform")
    a = random_subspace(key, 200, 5, scaling="uniform")
    given = sharpness(quadratic, params, 1e-2, A=a)
    assert given.value == drawn.value and np.array_equal(given.y, drawn.y)
    assert (given.subspace_dim, given.subspace_scaling) == (5, "given")
    assert drawn.subspace_scaling == "uniform"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"A": np.ones((199, 3))}, "A must be an \\(n, p\\) matrix with n = 200 rows"),
        ({"A": np.ones(200)}, "A must be an \\(n, p\\) matrix"),
        ({"A": np.full((200, 2), np.nan)}, "A must have finite entries"),
        ({"A": np.ones((200, 2))}, "A must have full column rank"),
        ({"A": np.eye(200)[:, :3], "key": 0}, "key was given with A"),
        ({"A": np.eye(200)[:, :3], "subspace_dim": 4}, "subspace_dim=4 but A has 3 columns"),
        ({"subspace_dim": 3, "key": 0, "subspace_scaling": "qr"}, "subspace_scaling"),
    ],
)
def test_bad_subspaces_are_value_errors_naming_the_problem(kwargs, match):
    params = {"w": jnp.linspace(-1.0, 1.0, 200)}
    with pytest.raises(ValueError, match=match):
        sharpness(quadratic, params, 1e-2, **kwargs)


def test_an_int_seed_is_the_key_it_names():
    np.testing.assert_array_equal(
        np.asarray(random_subspace(5, 300, 3, scaling="rows")),
        np.asarray(random_subspace(jax.random.key(5), 300, 3, scaling="rows")),
    )
