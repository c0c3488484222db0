"""Tests of keskar_repro.measures.landscape: filter normalisation, grids against closed forms,
the invariance that motivates filter normalisation, resuming a surface, and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from keskar_repro.measures.landscape import filter_normalized_direction, grid_values, surface

H = {"w": np.array([[1.0, 2.0], [3.0, 4.0], [0.5, 0.25]]), "b": np.array([2.0, -1.0])}


def quadratic(p):  # 1/2 sum h x^2 over both leaves
    return 0.5 * sum(jnp.sum(jnp.asarray(H[k], jnp.float32) * p[k] ** 2) for k in H)


def exact_quadratic(p) -> float:
    return 0.5 * sum(float(np.sum(H[k] * np.asarray(p[k], np.float64) ** 2)) for k in H)


def point() -> dict:
    rng = np.random.default_rng(0)
    return {k: jnp.asarray(rng.standard_normal(v.shape), jnp.float32) for k, v in H.items()}


def test_filter_normalized_direction_matches_each_output_unit_norm():
    x = {
        "kernel": jnp.asarray(np.random.default_rng(1).standard_normal((5, 3)), jnp.float32),
        "zero_unit": jnp.zeros((4, 2)).at[:, 0].set(1.0),
        "bias": jnp.ones(3),
        "step": jnp.int32(7),
    }
    d = filter_normalized_direction(jax.random.key(0), x)
    np.testing.assert_allclose(
        np.linalg.norm(d["kernel"], axis=0), np.linalg.norm(x["kernel"], axis=0), rtol=1e-6
    )
    np.testing.assert_allclose(np.linalg.norm(d["zero_unit"], axis=0), [2.0, 0.0], rtol=1e-6)
    assert np.all(d["bias"] == 0) and d["step"] == 0 and d["step"].dtype == jnp.int32
    with_vectors = filter_normalized_direction(jax.random.key(0), x, include_vectors=True)
    np.testing.assert_array_equal(with_vectors["bias"], x["bias"])
    np.testing.assert_array_equal(with_vectors["kernel"], d["kernel"])  # same draws
    other = filter_normalized_direction(jax.random.key(1), x)
    assert not np.allclose(other["kernel"], d["kernel"])


def test_grid_values_are_the_function_at_each_point():
    x = point()
    d1 = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    d2 = {"w": jnp.zeros((3, 2)), "b": jnp.array([1.0, -2.0])}
    c = np.array([[0.0, 0.0], [1.0, 0.5], [-0.5, 2.0], [0.25, -1.0]])
    got = grid_values(quadratic, x, [d1, d2], c, points_per_call=3)
    want = [
        exact_quadratic(
            {k: np.asarray(x[k]) + a * np.asarray(d1[k]) + b * np.asarray(d2[k]) for k in H}
        )  # fmt: skip
        for a, b in c
    ]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got.dtype == np.float64 and got.shape == (4,)

    def two(p, data):  # a dict of scalars and data as an argument
        return {"loss": quadratic(p) * data, "sum_b": jnp.sum(p["b"])}

    both = grid_values(two, x, [d1, d2], c, data=jnp.float32(2.0))
    np.testing.assert_allclose(both["loss"], 2 * np.asarray(want), rtol=1e-5)
    np.testing.assert_allclose(both["sum_b"], float(jnp.sum(x["b"])) - c[:, 1], rtol=1e-5)


def test_surface_is_unchanged_by_a_rescaling_that_keeps_the_function():
    """A ReLU net relu(v W1 + b1) W2 is the same function at (c W1, c b1, W2 / c); the
    filter-normalised directions scale with it (same draws), and biases have none, so the
    whole surface is the same: the reason for filter normalisation."""
    rng = np.random.default_rng(3)
    v = jnp.asarray(rng.standard_normal((20, 4)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((20, 2)), jnp.float32)

    def loss(p):
        h = jax.nn.relu(v @ p["w1"] + p["b1"])
        return jnp.mean((h @ p["w2"] - y) ** 2)

    x = {k: jnp.asarray(rng.standard_normal(s), jnp.float32)
         for k, s in {"w1": (4, 6), "b1": (6,), "w2": (6, 2)}.items()}  # fmt: skip
    scaled = {"w1": 3.0 * x["w1"], "b1": 3.0 * x["b1"], "w2": x["w2"] / 3.0}
    grid = np.linspace(-1.0, 1.0, 5)
    values = []
    for p in (x, scaled):
        d1 = filter_normalized_direction(jax.random.key(4), p)
        d2 = filter_normalized_direction(jax.random.key(5), p)
        values.append(surface(loss, p, d1, d2, grid, grid)["value"])
    np.testing.assert_allclose(values[0], values[1], rtol=1e-5)
    raw = surface(loss, scaled, *(jax.tree_util.tree_map(jnp.ones_like, scaled),) * 2, grid, grid)
    assert not np.allclose(raw["value"], values[0], rtol=1e-2)  # unnormalised: it changes


def test_surface_resumes_from_a_partial_result():
    x = point()
    d1 = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    d2 = {"w": jnp.zeros((3, 2)), "b": jnp.ones(2)}
    alphas, betas = [-1.0, 0.0, 1.0], [0.0, 0.5]
    rows_seen: list[int] = []
    full = surface(quadratic, x, d1, d2, alphas, betas, on_row=lambda i, r: rows_seen.append(i))
    assert rows_seen == [0, 1, 2] and full["value"].shape == (3, 2)
    assert full["value"][1, 0] == pytest.approx(exact_quadratic(x), rel=1e-6)  # (0, 0) is x

    partial_result = {"value": full["value"].copy()}
    partial_result["value"][1:] = np.nan  # interrupted after the first row
    partial_result["value"][0] = -1.0  # kept as given: proof that row 0 is not recomputed
    rows_seen.clear()
    resumed = surface(quadratic, x, d1, d2, alphas, betas, partial_result=partial_result,
                      on_row=lambda i, r: rows_seen.append(i))  # fmt: skip
    assert rows_seen == [1, 2]
    np.testing.assert_array_equal(resumed["value"][0], [-1.0, -1.0])
    np.testing.assert_allclose(resumed["value"][1:], full["value"][1:])
    assert np.isnan(partial_result["value"][1, 0])  # the caller's arrays are not written


def test_bad_input_gets_one_clear_error():
    x = point()
    d = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    cases = [
        (lambda: surface(quadratic, x, d, d, [], [0.0]), "alphas"),
        (lambda: surface(quadratic, x, d, d, [0.0], [np.nan]), "betas"),
        (lambda: grid_values(quadratic, x, [{"w": jnp.ones((3, 2))}], [[0.0]]), "directions"),
        (
            lambda: grid_values(
                quadratic, x, [{"w": jnp.ones((2, 3)), "b": jnp.zeros(2)}], [[0.0]]
            ),
            "directions",
        ),  # fmt: skip
        (lambda: grid_values(quadratic, x, [d], [[0.0, 1.0]]), "coefficients"),
        (lambda: grid_values(quadratic, x, [], [[0.0]]), "directions"),
        (lambda: grid_values(quadratic, x, [d], [[0.0]], points_per_call=0), "points_per_call"),
        (
            lambda: surface(
                quadratic, x, d, d, [0.0, 1.0], [0.0], partial_result={"value": np.zeros((3, 1))}
            ),
            "another grid",
        ),  # fmt: skip
        (lambda: filter_normalized_direction(None, x), "key"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()
