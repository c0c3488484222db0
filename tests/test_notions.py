"""Tests of keskar_repro.measures.notions (adaptive, average-case, per-layer sharpness) and of the
pytree partition they share with keskar_repro.measures.sharpness, against exact answers."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from keskar_repro.measures.notions import (
    adaptive_sharpness,
    average_sharpness,
    layer_masks,
    per_layer,
)
from keskar_repro.measures.pytree import partition
from keskar_repro.measures.sharpness import sharpness

EPS = 1e-3


def flat(tree):
    """The leaves of tree, flattened in order, float64 numpy."""
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in jax.tree.leaves(tree)])


def flat_jnp(p):
    """The leaves of p, flattened in order, as one JAX vector (inside a loss)."""
    return jnp.concatenate([jnp.ravel(a) for a in jax.tree_util.tree_leaves(p)])


def make_params(seed=0):
    rng = np.random.default_rng(seed)
    return {"a": rng.standard_normal((4, 5)), "b": rng.standard_normal(6)}


_DATA = np.random.default_rng(12).standard_normal((16, 4))


def coupled_loss(p):
    """A nonlinear loss in which the two leaves interact."""
    hidden = jnp.tanh(jnp.asarray(_DATA) @ p["a"])
    return jnp.mean(jax.nn.logsumexp(hidden, axis=1)) + 0.3 * jnp.sum(jnp.sin(p["b"])) ** 2


# ------------------------------------------------------------------------------------------
# Adaptive worst case
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eta", [0.0, 0.01])
def test_adaptive_linear_exact_corner(x64, eta):
    """f = s (1 + c.(theta - x)) with |c_i| (|x_i| + eta) constant: the maximum is the corner,
    rise = eps sum_i |c_i| (|x_i| + eta) (= eps sum |c_i x_i| at eta = 0), in Metric 2.1 units."""
    params = make_params(1)
    x = flat(params)
    signs = np.where(np.random.default_rng(2).random(x.size) < 0.5, -1.0, 1.0)
    c = signs * 0.7 / (np.abs(x) + eta)
    scale = 0.2

    def loss(p):
        return scale * (1.0 + jnp.dot(jnp.asarray(c), flat_jnp(p) - x))

    r = adaptive_sharpness(loss, params, EPS, eta=eta, method="lbfgsb")
    gain = scale * EPS * np.sum(np.abs(c) * (np.abs(x) + eta))
    assert r.value == pytest.approx(100 * gain / (1 + scale), rel=1e-12)
    np.testing.assert_allclose(r.report.y, signs * EPS * (np.abs(x) + eta), rtol=1e-15)
    assert (r.eta, r.epsilon, r.ball, r.report.eta) == (eta, EPS, "l_inf", eta)
    metric = sharpness(loss, params, EPS, method="lbfgsb")  # the "+1" box is wider
    assert metric.value > 1.5 * r.value


def test_adaptive_with_eta_one_is_metric_2_1(x64):
    params = make_params(3)
    a = adaptive_sharpness(coupled_loss, params, EPS, eta=1.0, method="lbfgsb")
    m = sharpness(coupled_loss, params, EPS, method="lbfgsb")
    assert a.value == m.value and a.value > 0
    np.testing.assert_array_equal(a.report.y, m.y)


def relu_net(p):
    hidden = jax.nn.relu(jnp.asarray(_DATA) @ p["w1"])
    return jnp.mean((hidden @ p["w2"] - 1.0) ** 2)


def test_adaptive_is_invariant_under_rescaling_metric_2_1_is_not(x64):
    """f(theta) = g(c * theta): adaptive sharpness (eta = 0) of f at x / c equals that of g at x;
    likewise for the ReLU symmetry (c W1, W2 / c). Metric 2.1 changes in both."""
    rng = np.random.default_rng(4)
    params = {"w1": rng.standard_normal((4, 8)), "w2": rng.standard_normal(8)}
    c = {"w1": 10.0 ** rng.uniform(-1, 1, (4, 8)), "w2": 10.0 ** rng.uniform(-1, 1, 8)}
    at = jax.tree_util.tree_map(lambda x, k: x / k, params, c)

    def f(p):
        return relu_net(jax.tree_util.tree_map(lambda x, k: x * k, p, c))

    k = 10.0 ** rng.uniform(-1, 1, 8)  # per hidden unit
    moved = {"w1": params["w1"] * k, "w2": params["w2"] / k}
    assert float(relu_net(moved)) == pytest.approx(float(relu_net(params)), rel=1e-12)
    g_adaptive = adaptive_sharpness(relu_net, params, EPS, method="lbfgsb").value
    g_metric = sharpness(relu_net, params, EPS, method="lbfgsb").value
    for loss, point in ((f, at), (relu_net, moved)):
        assert adaptive_sharpness(loss, point, EPS, method="lbfgsb").value == pytest.approx(
            g_adaptive, rel=1e-9
        )
        assert abs(sharpness(loss, point, EPS, method="lbfgsb").value / g_metric - 1) > 0.1


# ------------------------------------------------------------------------------------------
# Average case
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("antithetic", [True, False])
@pytest.mark.parametrize("adaptive", [False, True])
def test_average_quadratic_known_answer(x64, adaptive, antithetic):
    """f = sum h_i theta_i^2 / 2: E rise = sum h_i s_i^2 / 2 exactly, s = sigma or sigma |x|;
    the estimate lies within 4 of its standard errors, and the standard error is the exact
    sqrt(Var(rise_j) / N) within 20%: Var = sum h^2 s^4 / 2 (+ sum h^2 x^2 s^2 without pairs)."""
    rng = np.random.default_rng(5)
    params = make_params(6)
    x = flat(params)
    h = rng.uniform(0.5, 3.0, x.size)
    sigma, n = 0.05, 400

    def loss(p):
        return 0.5 * jnp.sum(jnp.asarray(h) * flat_jnp(p) ** 2)

    r = average_sharpness(loss, params, sigma, key=jax.random.key(0), samples=n,
                          adaptive=adaptive, antithetic=antithetic)  # fmt: skip
    s = sigma * np.abs(x) if adaptive else sigma * np.ones_like(x)
    exact = 0.5 * np.sum(h * s**2)
    var = 0.5 * np.sum(h**2 * s**4) + (0.0 if antithetic else np.sum(h**2 * x**2 * s**2))
    assert abs(r.rise - exact) <= 4 * r.rise_stderr
    assert 0.8 <= r.rise_stderr / np.sqrt(var / n) <= 1.2
    assert r.value == pytest.approx(100 * r.rise / (1 + r.f0), rel=1e-12)
    assert r.stderr == pytest.approx(100 * r.rise_stderr / (1 + r.f0), rel=1e-12)
    assert r.f0 == pytest.approx(0.5 * np.sum(h * x**2), rel=1e-12)
    assert r.rises.shape == (n,) and r.loss_evals == n * (2 if antithetic else 1) + 1


def test_average_antithetic_pairs_cancel_a_linear_term(x64):
    params = make_params(7)
    c = np.random.default_rng(8).standard_normal(flat(params).size)

    def loss(p):
        return 2.0 + jnp.dot(jnp.asarray(c), flat_jnp(p))

    pairs = average_sharpness(loss, params, 0.1, key=jax.random.key(1), samples=64)
    assert np.max(np.abs(pairs.rises)) <= 1e-13 and pairs.rise_stderr <= 1e-13
    single = average_sharpness(loss, params, 0.1, key=jax.random.key(1), samples=400,
                               antithetic=False, chunk=64)  # fmt: skip
    assert 0.8 <= single.rise_stderr / (0.1 * np.linalg.norm(c) / np.sqrt(400)) <= 1.2


def test_average_same_key_same_draws_whatever_the_chunk(x64):
    params = make_params(9)
    a = average_sharpness(coupled_loss, params, 0.01, key=jax.random.key(2), samples=12, chunk=5)
    b = average_sharpness(coupled_loss, params, 0.01, key=jax.random.key(2), samples=12, chunk=12)
    c = average_sharpness(coupled_loss, params, 0.01, key=jax.random.key(3), samples=12, chunk=5)
    np.testing.assert_allclose(a.rises, b.rises, rtol=1e-9, atol=1e-15)  # vmap widths round
    assert not np.allclose(a.rises, c.rises)


# ------------------------------------------------------------------------------------------
# Masks and layers
# ------------------------------------------------------------------------------------------


def _measures():
    return {
        "metric 2.1": lambda loss, p, **kw: sharpness(loss, p, EPS, method="lbfgsb", **kw),
        "adaptive": lambda loss, p, **kw: adaptive_sharpness(loss, p, EPS, method="lbfgsb", **kw),
        "average": lambda loss, p, **kw: average_sharpness(
            loss, p, 0.01, key=jax.random.key(4), samples=32, **kw
        ),
    }


@pytest.mark.parametrize("notion", list(_measures()))
def test_mask_equals_the_layer_alone(x64, notion):
    """With mask {"a": True, "b": False} each notion equals that notion of a -> f(a, b fixed) on
    {"a": a} alone (the same draws for the average); the callable mask gives the same."""
    measure = _measures()[notion]
    params = make_params(10)

    def alone(p):
        return coupled_loss({"a": p["a"], "b": jnp.asarray(params["b"])})

    masked = measure(coupled_loss, params, mask={"a": True, "b": False})
    by_path = measure(coupled_loss, params, mask=lambda path: path == "a")
    single = measure(alone, {"a": params["a"]})
    whole = measure(coupled_loss, params)
    assert masked.value == pytest.approx(single.value, rel=1e-12) and masked.value > 0
    assert by_path.value == masked.value
    assert abs(whole.value / masked.value - 1) > 0.05  # the mask matters
    counts = masked.leaf_counts if notion == "average" else masked_report(masked).leaf_counts
    assert (counts.perturbed_entries, counts.masked_leaves, counts.masked_entries) == (20, 1, 6)
    assert counts.perturbed_paths == ("a",)
    if notion != "average":
        delta = masked_report(masked).delta
        assert np.all(delta["b"] == 0) and np.any(delta["a"] != 0)


def masked_report(result):
    return getattr(result, "report", result)


def test_layer_masks_of_a_flax_model_and_per_layer():
    from keskar_repro.training.models import MLP, init_variables

    model = MLP(hidden=(3,))
    variables = jax.eval_shape(lambda key: init_variables(model, key), jax.random.key(0))
    masks = layer_masks(variables["params"])
    assert list(masks) == ["BatchNorm_0", "Dense_0", "Dense_1"]
    assert [sum(jax.tree_util.tree_leaves(m)) for m in masks.values()] == [2, 2, 2]
    assert list(layer_masks(variables, depth=2))[:2] == ["batch_stats/BatchNorm_0",
                                                         "params/BatchNorm_0"]  # fmt: skip

    params = {
        "Dense_0": {"kernel": np.ones((2, 3), np.float32), "bias": np.zeros(3, np.float32)},
        "Dense_1": {"kernel": np.full((3, 1), 0.5, np.float32)},
        "step": np.int32(5),
    }

    def loss(p):
        hidden = jnp.tanh(jnp.ones((4, 2)) @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
        return jnp.sum((hidden @ p["Dense_1"]["kernel"]) ** 2) * p["step"]

    layers = per_layer(average_sharpness, loss, params, 0.1, key=jax.random.key(5), samples=16)
    assert list(layers) == ["Dense_0", "Dense_1"]  # "step" has no floating entry
    assert [r.leaf_counts.perturbed_entries for r in layers.values()] == [9, 3]
    assert all(r.leaf_counts.fixed_leaves == 1 for r in layers.values())


# ------------------------------------------------------------------------------------------
# Leaves of other dtypes; records; errors
# ------------------------------------------------------------------------------------------


def test_bfloat16_float16_and_integer_leaves():
    """w = +-2^k in bfloat16: w (1 +- 1/16) is exact in bfloat16, so the adaptive maximum of
    f = step * c.w + u(key) at eps = 1/16 is the exact corner, rise = step * eps * sum |c w|."""
    rng = np.random.default_rng(11)
    k = rng.integers(-3, 4, 12)
    signs = np.where(rng.random(12) < 0.5, -1.0, 1.0)
    w = (signs * 2.0**k).astype(jnp.bfloat16)
    c = (np.where(rng.random(12) < 0.5, -1.0, 1.0) * 2.0**-k).astype(np.float32)
    key = jax.random.key(3)
    params = {"w": w, "v": np.full(3, 0.5, np.float16), "step": np.int32(3), "key": key}

    def loss(p):
        linear = jnp.sum(jnp.asarray(c) * p["w"].astype(jnp.float32)) * p["step"]
        return linear + jax.random.uniform(p["key"]) + jnp.sum(p["v"]).astype(jnp.float32)

    f0 = 3 * float(np.dot(c, w.astype(np.float32))) + float(jax.random.uniform(key)) + 1.5
    r = adaptive_sharpness(loss, params, 2.0**-4, method="lbfgsb")
    assert r.report.f0 == pytest.approx(f0, rel=1e-6)
    gain = 3 * 2.0**-4 * np.sum(np.abs(c * w.astype(np.float32))) + 2.0**-4 * 1.5
    assert r.value == pytest.approx(100 * gain / (1 + f0), rel=1e-6)
    counts = r.report.leaf_counts
    assert (counts.perturbed_leaves, counts.perturbed_entries) == (2, 15)
    assert (counts.fixed_leaves, counts.fixed_entries) == (2, 2)
    assert r.report.delta["w"].dtype == jnp.bfloat16 and r.report.delta["step"] == 0
    avg = average_sharpness(loss, params, 0.01, key=jax.random.key(6), samples=8)
    assert avg.f0 == pytest.approx(f0, rel=1e-6) and np.isfinite(avg.value)
    assert avg.leaf_counts == counts
    assert partition(params).dtype == "float32"


def test_flax_nnx_state_with_rng_leaves():
    """An NNX state holds a dropout RNG key and counter: both are held fixed, and the adaptive
    sharpness is that of the same Linear layer written as plain arrays."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(3, 2, rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)

    graphdef, state = nnx.split(Net(nnx.Rngs(0, dropout=1)))
    xs = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)

    def loss(s):
        return jnp.mean(nnx.merge(graphdef, s).dense(xs) ** 2)

    def plain(p):
        return jnp.mean((xs @ p["kernel"] + p["bias"]) ** 2)

    r = adaptive_sharpness(loss, state, 1e-2, method="lbfgsb")
    arrays = {"kernel": state["dense"]["kernel"][...], "bias": state["dense"]["bias"][...]}
    ref = adaptive_sharpness(plain, arrays, 1e-2, method="lbfgsb")
    assert r.value == pytest.approx(ref.value, rel=1e-5) and r.value > 0
    counts = r.report.leaf_counts
    assert (counts.perturbed_entries, counts.fixed_leaves, counts.fixed_entries) == (8, 2, 2)
    assert list(layer_masks(state)) == ["dense", "drop"]


def test_records_are_frozen_and_json_ready():
    params = {"w": np.linspace(-1, 1, 6, dtype=np.float32)}

    def loss(p):
        return jnp.sum(jnp.cos(p["w"]))

    adaptive = adaptive_sharpness(loss, params, maxiter=2)
    average = average_sharpness(loss, params, 0.1, key=jax.random.key(0), samples=4)
    for record, notion in ((adaptive, "adaptive"), (average, "average")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.value = 0.0
        d = json.loads(record.to_json())
        assert d["notion"] == notion and d["value"] == record.value
    assert json.loads(adaptive.to_json())["report"]["nit"] == 2
    d = average.to_dict()
    assert "rises" not in d and d["leaf_counts"]["perturbed_entries"] == 6 and d["samples"] == 4


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"epsilon": 0.0}, "epsilon"),
        ({"eta": -1.0, "adaptive": True}, "eta"),
        ({"eta": 0.1}, "eta"),
        ({"samples": 1}, "samples"),
        ({"chunk": 0}, "chunk"),
        ({"key": None}, "key"),
        ({"mask": {"w": 1}}, "mask"),
        ({"mask": {"w": True, "z": False}}, "mask"),
        ({"mask": {"w": False}}, "params"),
    ],
)
def test_average_argument_errors(kwargs, name):
    kwargs = {"epsilon": 0.1, "key": jax.random.key(0), **kwargs}
    with pytest.raises(ValueError, match=name):
        average_sharpness(lambda p: jnp.sum(p["w"] ** 2), {"w": np.ones(3, np.float32)}, **kwargs)


def test_adaptive_argument_errors():
    params = {"w": np.ones(3, np.float32), "i": np.arange(2)}
    with pytest.raises(ValueError, match="eta"):
        adaptive_sharpness(lambda p: jnp.sum(p["w"] ** 2), params, eta=-0.1)
    with pytest.raises(ValueError, match="params"):
        adaptive_sharpness(lambda p: jnp.sum(p["w"] ** 2), params, mask={"w": False, "i": True})
