"""keskar_repro.training.bn_policies: the policy names, the chunk length of each, and which
statistics normalise the network under each (checked against a numpy forward pass of a
1-hidden-layer MLP)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from keskar_repro.training.bn_policies import (
    BN_POLICIES,
    apply_model,
    check_bn_policy,
    chunk_length,
)
from keskar_repro.training.models import MLP

EPS = 1e-3  # MLP's bn_epsilon (Keras 1's default)


def test_unknown_policy_is_a_value_error_naming_it():
    for policy in BN_POLICIES:
        check_bn_policy(policy)
    with pytest.raises(ValueError, match="'sideways'"):
        check_bn_policy("sideways")
    with pytest.raises(ValueError, match="'Batch'"):  # names are case-sensitive
        chunk_length(10, "Batch")


def test_chunk_length_of_each_policy():
    assert chunk_length(10000, "full", 5000) == 10000
    assert chunk_length(10000, "batch", 5000) == 5000
    assert chunk_length(10000, "running", 5000) == 5000
    assert chunk_length(3000, "batch", 5000) == 3000
    assert chunk_length(3000, "running", 5000) == 3000
    assert chunk_length(3000, "full", 7) == 3000
    assert chunk_length(8000, "batch") == 5000  # the authors' evaluation batch
    assert chunk_length(1, "batch", 1) == 1
    for bad in (0, -5):
        with pytest.raises(ValueError, match=f"chunk_size={bad}"):
            chunk_length(100, "batch", bad)


def hand_set_variables() -> dict:
    """Variables of MLP(hidden=(4,)) on 3 input features, every entry set by hand (not Flax's
    initialisers): running statistics far from any chunk's own."""
    rng = np.random.default_rng(0)
    return {
        "params": {
            "Dense_0": {"kernel": rng.normal(size=(3, 4)), "bias": np.array([0.5, -1.0, 2.0, 0.0])},
            "BatchNorm_0": {"scale": np.array([1.0, 2.0, 0.5, 1.5]), "bias": np.full(4, 0.1)},
            "Dense_1": {"kernel": rng.normal(size=(4, 10)), "bias": np.linspace(-1, 1, 10)},
        },
        "batch_stats": {
            "BatchNorm_0": {"mean": np.array([0.3, -0.2, 1.0, 0.0]), "var": np.full(4, 2.0)}
        },
    }


def as_jax(variables: dict) -> dict:
    return {k: {m: {n: jnp.asarray(a, jnp.float32) for n, a in layer.items()}
                for m, layer in v.items()} for k, v in variables.items()}  # fmt: skip


def numpy_forward(variables: dict, x: np.ndarray, mean=None, var=None) -> np.ndarray:
    """Dense -> BN -> ReLU -> Dense in float64; BN with the given statistics, or the chunk's
    own (biased variance, as batch norm's) when they are None."""
    p = variables["params"]
    h = x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    if mean is None:
        mean, var = h.mean(0), h.var(0)
    h = (h - mean) / np.sqrt(var + EPS) * p["BatchNorm_0"]["scale"] + p["BatchNorm_0"]["bias"]
    return np.maximum(h, 0) @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]


MODEL = MLP(hidden=(4,))
# two chunks of 3 examples with different statistics (one shape: JAX compiles each op once)
X, X2 = np.random.default_rng(1).normal(size=(2, 3, 3)) * np.array([[[3.0]], [[0.5]]]) + 1


APPLY = jax.jit(apply_model, static_argnums=(0, 3))  # one compile per policy, not per op


def logits(variables: dict, x: np.ndarray, policy: str) -> np.ndarray:
    return np.asarray(APPLY(MODEL, as_jax(variables), jnp.asarray(x, jnp.float32), policy))


def test_batch_and_full_normalise_with_the_chunks_own_statistics():
    v = hand_set_variables()
    expected = numpy_forward(v, X)  # the chunk's statistics, not the stored ones
    for policy in ("batch", "full"):
        np.testing.assert_allclose(logits(v, X, policy), expected, rtol=1e-5, atol=1e-5)
    # ... so the stored statistics play no part
    v["batch_stats"]["BatchNorm_0"] = {"mean": np.array([9.0, 9, 9, 9]), "var": np.full(4, 0.01)}
    for policy in ("batch", "full"):
        np.testing.assert_allclose(logits(v, X, policy), expected, rtol=1e-5, atol=1e-5)


def test_running_normalises_with_the_stored_statistics():
    v = hand_set_variables()
    stored = v["batch_stats"]["BatchNorm_0"]
    expected = numpy_forward(v, X, stored["mean"], stored["var"])
    np.testing.assert_allclose(logits(v, X, "running"), expected, rtol=1e-5, atol=1e-5)
    assert np.abs(expected - numpy_forward(v, X)).max() > 0.1  # not the chunk's statistics
    before = logits(v, X, "running")
    stored["mean"] = stored["mean"] - 1.0  # lifts every unit: some pass the ReLU
    after = logits(v, X, "running")
    assert np.abs(after - before).max() > 0.05
    np.testing.assert_allclose(
        after, numpy_forward(v, X, stored["mean"], stored["var"]), rtol=1e-5, atol=1e-5
    )


def test_batch_statistics_remove_a_constant_shift_of_the_features():
    # x + c adds c @ W to every pre-BN row, which the chunk's mean contains and removes; the
    # stored running mean does not move with it
    v = hand_set_variables()
    c = np.array([2.0, -1.0, 0.5])
    for chunk in (X, X2):
        np.testing.assert_allclose(
            logits(v, chunk + c, "batch"), logits(v, chunk, "batch"), rtol=1e-4, atol=1e-4
        )
        assert np.abs(logits(v, chunk + c, "running") - logits(v, chunk, "running")).max() > 0.1
    # each chunk is normalised by its own statistics: a row's logits depend on its chunk
    mixed = np.stack([X[0], X2[1], X2[2]])
    assert np.abs(logits(v, mixed, "batch")[0] - logits(v, X, "batch")[0]).max() > 0.1
    assert np.abs(logits(v, mixed, "running")[0] - logits(v, X, "running")[0]).max() < 1e-5
