import jax
import jax.numpy as jnp

from keskar_repro.models import MLP, count_params, f1, init_variables, matmul_flops_per_example


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


def test_width_and_depth_are_parameters():
    model = MLP(hidden=(16, 8))
    params = init_variables(model, jax.random.key(0))["params"]
    assert count_params(params) == (784 * 16 + 16) + (16 * 8 + 8) + (8 * 10 + 10) + 2 * (16 + 8)


def test_flop_count_of_f1():
    assert matmul_flops_per_example(f1()) == 2 * (784 * 512 + 4 * 512 * 512 + 512 * 10)
