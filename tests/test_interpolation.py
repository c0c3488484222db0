import jax
import numpy as np
import pytest

from keskar_repro.training.interpolation import (
    curvilinear_path,
    evaluate_path,
    interpolate_variables,
    linear_path,
    path_weights,
)
from keskar_repro.training.models import MLP, init_variables
from keskar_repro.training.objective import split_metrics

MODEL = MLP(hidden=(16, 16))


@pytest.fixture(scope="module")
def endpoints():
    a = init_variables(MODEL, jax.random.key(0))
    b = init_variables(MODEL, jax.random.key(1))
    b["batch_stats"] = jax.tree_util.tree_map(lambda s: s + 0.5, b["batch_stats"])
    return a, b


@pytest.mark.parametrize("path", [linear_path, curvilinear_path])
def test_paths_hit_both_endpoints_exactly(path, endpoints):
    a, b = endpoints
    points = path(a["params"], b["params"], [0.0, 1.0])
    for u, v, p in zip(
        jax.tree_util.tree_leaves(a["params"]),
        jax.tree_util.tree_leaves(b["params"]),
        jax.tree_util.tree_leaves(points),
        strict=True,
    ):
        np.testing.assert_array_equal(p[0], u)
        np.testing.assert_array_equal(p[1], v)


def test_path_formulas():
    alphas = np.array([-1.0, 0.5, 2.0])
    w_a, w_b = path_weights(alphas, "linear")
    np.testing.assert_allclose(w_a, [2.0, 0.5, -1.0])
    np.testing.assert_allclose(w_b, [-1.0, 0.5, 2.0])
    w_a, w_b = path_weights(alphas, "curvilinear")
    np.testing.assert_allclose(w_a, [0.0, np.sqrt(0.5), -1.0], atol=1e-7)
    np.testing.assert_allclose(w_b, [-1.0, np.sqrt(0.5), 0.0], atol=1e-7)
    with pytest.raises(ValueError, match="kind"):
        path_weights(alphas, "spline")


@pytest.mark.parametrize("bn_policy", ["batch", "running"])
@pytest.mark.parametrize("kind", ["linear", "curvilinear"])
def test_one_call_equals_a_loop_of_single_evaluations(endpoints, bn_policy, kind):
    a, b = endpoints
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=30)
    alphas = np.linspace(-1, 2, 7)
    result = evaluate_path(
        MODEL,
        a,
        b,
        alphas,
        {"train": (x, y), "test": (x[:11], y[:11])},
        kind=kind,
        bn_policy=bn_policy,
        chunk_size=8,
        alpha_batch=3,
    )
    assert set(result) == {"alpha", "train_loss", "train_accuracy", "test_loss", "test_accuracy"}
    # assert_allclose treats NaNs in the same places as equal: check finiteness first
    assert np.all(np.isfinite(result["train_loss"])), result["train_loss"]
    assert np.all(np.isfinite(result["test_loss"])), result["test_loss"]
    w_a, w_b = path_weights(alphas, kind)
    for i, alpha in enumerate(alphas):
        point = interpolate_variables(a, b, w_a[i], w_b[i])
        loss, acc = split_metrics(
            MODEL, point["params"], point["batch_stats"], x, y, bn_policy=bn_policy, chunk_size=8
        )
        assert np.isfinite(loss), alpha
        np.testing.assert_allclose(result["train_loss"][i], loss, rtol=1e-5, err_msg=str(alpha))
        np.testing.assert_allclose(result["train_accuracy"][i], acc)


def _far_apart_variances(model, small=0.05, large=20.0):
    """Two endpoint variable sets whose running variances differ enough (small at a, large at
    b) that the linear rule is negative at alpha = -1 (linear: 2 small - large) and at both
    ends of the curvilinear path (-large at alpha = -1, -small at alpha = 2)."""
    a = init_variables(model, jax.random.key(2))
    b = init_variables(model, jax.random.key(3))
    assert all(set(s) == {"mean", "var"} for s in a["batch_stats"].values())  # Flax BatchNorm
    rng = np.random.default_rng(1)
    for variables, scale in ((a, small), (b, large)):
        for stats in variables["batch_stats"].values():
            n = stats["var"].shape[0]
            stats["mean"] = rng.normal(0, 0.5, n).astype(np.float32)
            stats["var"] = (scale * rng.uniform(0.5, 1.5, n)).astype(np.float32)
    return a, b


@pytest.mark.parametrize("kind", ["linear", "curvilinear"])
def test_running_statistics_stay_valid_beyond_the_endpoints(tiny_config, small_data, kind):
    model = tiny_config.model()
    a, b = _far_apart_variances(model)
    alphas = np.linspace(-1, 2, 7)  # includes -1, 0, 1 and 2
    w_a, w_b = path_weights(alphas, kind)
    linear_vars = np.stack(
        [
            w_a[i] * a["batch_stats"]["BatchNorm_0"]["var"]
            + w_b[i] * b["batch_stats"]["BatchNorm_0"]["var"]
            for i in (0, len(alphas) - 1)
        ]
    )
    assert np.any(linear_vars < 0)  # the old, linear rule would give negative variances here

    x, y = small_data.x_train[:200], small_data.y_train[:200]
    result = evaluate_path(
        model, a, b, alphas, {"train": (x, y)}, kind=kind, bn_policy="running", chunk_size=100
    )
    assert np.all(np.isfinite(result["train_loss"])), result["train_loss"]
    for i in range(len(alphas)):
        point = interpolate_variables(a, b, w_a[i], w_b[i])
        for stats in point["batch_stats"].values():
            assert np.all(np.asarray(stats["var"]) > 0)

    # exact at both endpoints: the stored statistics and parameters come back unchanged
    for i, end in ((2, a), (4, b)):
        assert alphas[i] == (0.0 if end is a else 1.0)
        point = interpolate_variables(a, b, w_a[i], w_b[i])
        for got, want in zip(
            jax.tree_util.tree_leaves(point), jax.tree_util.tree_leaves(end), strict=True
        ):
            np.testing.assert_array_equal(got, want)
        loss, acc = split_metrics(
            model, end["params"], end["batch_stats"], x, y, bn_policy="running", chunk_size=100
        )
        np.testing.assert_allclose(result["train_loss"][i], loss, rtol=1e-6)
        np.testing.assert_allclose(result["train_accuracy"][i], acc)


def test_variance_interpolation_is_geometric():
    a = {
        "params": {"w": np.float32([1.0])},
        "batch_stats": {"BN": {"mean": np.float32([1.0, -2.0]), "var": np.float32([0.25, 4.0])}},
    }
    b = {
        "params": {"w": np.float32([3.0])},
        "batch_stats": {"BN": {"mean": np.float32([3.0, 0.0]), "var": np.float32([4.0, 0.25])}},
    }
    point = interpolate_variables(a, b, 2.0, -1.0)  # linear path at alpha = -1
    np.testing.assert_allclose(point["params"]["w"], [-1.0], rtol=1e-6)
    np.testing.assert_allclose(point["batch_stats"]["BN"]["mean"], [-1.0, -4.0], rtol=1e-6)
    # var_a^2 / var_b; the linear rule would give 2 var_a - var_b = [-3.5, 7.75]
    np.testing.assert_allclose(point["batch_stats"]["BN"]["var"], [1 / 64, 64.0], rtol=1e-5)
    point = interpolate_variables(a, b, 0.5, 0.5)
    np.testing.assert_allclose(point["batch_stats"]["BN"]["var"], [1.0, 1.0], rtol=1e-6)
