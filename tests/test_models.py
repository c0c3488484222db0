import jax
import jax.numpy as jnp
import numpy as np

from keskar_repro.training.models import (
    MLP,
    count_params,
    f1,
    init_variables,
    matmul_flops_per_example,
    train_step_flops_per_example,
)


def test_f1_parameter_count_is_pinned():
    variables = init_variables(f1(), jax.random.key(0))
    assert count_params(variables["params"]) == 1_462_794
    assert count_params(variables["batch_stats"]) == 5 * 2 * 512


def test_f1_layout_dense_bn_relu_and_logits():
    model = f1()
    variables = init_variables(model, jax.random.key(1))
    params = variables["params"]
    assert sorted(k for k in params if k.startswith("Dense")) == [f"Dense_{i}" for i in range(6)]
    assert sorted(k for k in params if k.startswith("BatchNorm")) == [
        f"BatchNorm_{i}" for i in range(5)
    ]
    assert params["Dense_0"]["kernel"].shape == (784, 512)
    assert params["Dense_5"]["kernel"].shape == (512, 10)
    logits = model.apply(variables, jnp.ones((3, 28, 28)), use_running_average=True)
    assert logits.shape == (3, 10)

    # The order for real: the Flax forward pass equals a float64 numpy Dense -> BN -> ReLU
    # (x 5) -> Dense, and not Dense -> ReLU -> BN. Random parameters and running statistics
    # (non-zero BN offsets and Dense biases, scales away from 1), so that the orders differ.
    rng = np.random.default_rng(0)
    variables = jax.tree_util.tree_map(
        lambda leaf: np.asarray(leaf) + rng.normal(0, 0.1, leaf.shape).astype(np.float32),
        variables,
    )
    for stats in variables["batch_stats"].values():
        stats["var"] = rng.uniform(0.5, 2.0, stats["var"].shape).astype(np.float32)
    x = rng.uniform(0, 1, (8, 28, 28)).astype(np.float32)
    for use_running_average in (False, True):
        got = model.apply(
            variables, x, use_running_average=use_running_average, mutable=["batch_stats"]
        )[0]
        want = _numpy_forward(variables, x, model.bn_epsilon, use_running_average, "bn_relu")
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        other = _numpy_forward(variables, x, model.bn_epsilon, use_running_average, "relu_bn")
        assert np.max(np.abs(other - want)) > 0.1


def _numpy_forward(variables, x, epsilon, use_running_average, order):
    """Hand-written forward pass of the MLP in float64; `order` "bn_relu" or "relu_bn"."""
    params, stats = variables["params"], variables["batch_stats"]
    h = np.asarray(x, np.float64).reshape(x.shape[0], -1)

    def dense(i, h):
        layer = params[f"Dense_{i}"]
        return h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)

    def batch_norm(i, h):
        if use_running_average:
            mean, var = (
                np.asarray(stats[f"BatchNorm_{i}"][k], np.float64) for k in ("mean", "var")
            )
        else:
            mean, var = h.mean(axis=0), h.var(axis=0)  # batch statistics (biased variance)
        bn = params[f"BatchNorm_{i}"]
        scale, offset = (np.asarray(bn[k], np.float64) for k in ("scale", "bias"))
        return (h - mean) / np.sqrt(var + epsilon) * scale + offset

    n_hidden = len(stats)
    for i in range(n_hidden):
        h = dense(i, h)
        if order == "bn_relu":
            h = np.maximum(batch_norm(i, h), 0.0)
        else:
            h = batch_norm(i, np.maximum(h, 0.0))
    return dense(n_hidden, h)


def test_width_and_depth_are_parameters():
    model = MLP(hidden=(16, 8))
    params = init_variables(model, jax.random.key(0))["params"]
    assert count_params(params) == (784 * 16 + 16) + (16 * 8 + 8) + (8 * 10 + 10) + 2 * (16 + 8)


def test_flop_count_of_f1():
    assert matmul_flops_per_example(f1()) == 2 * (784 * 512 + 4 * 512 * 512 + 512 * 10)


def test_train_step_flops_of_f1():
    # 3F - 2*784*512 with F = 2 * (784*512 + 4*512*512 + 512*10) = 2,910,208
    assert train_step_flops_per_example(f1()) == 7_927_808
