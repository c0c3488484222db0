import jax
import numpy as np
import pytest

from keskar_repro.interpolation import (
    curvilinear_path,
    evaluate_path,
    linear_path,
    path_weights,
)
from keskar_repro.models import MLP, init_variables
from keskar_repro.objective import split_metrics

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
    path = linear_path if kind == "linear" else curvilinear_path
    for i, alpha in enumerate(alphas):
        point = jax.tree_util.tree_map(lambda leaf, i=i: leaf[i], path(a, b, alphas))
        loss, acc = split_metrics(
            MODEL, point["params"], point["batch_stats"], x, y, bn_policy=bn_policy, chunk_size=8
        )
        np.testing.assert_allclose(result["train_loss"][i], loss, rtol=1e-5, err_msg=str(alpha))
        np.testing.assert_allclose(result["train_accuracy"][i], acc)
