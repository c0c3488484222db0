"""Training methods (keskar_repro.training.methods) and ghost batch norm, against known answers:
each method's step on one batch (the whole 1,000-image subset) against the same update done by
hand with autodiff and optax."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from keskar_repro.training import methods
from keskar_repro.training.config import TrainConfig
from keskar_repro.training.epoch import initial_state, make_epoch_fn, seed_keys
from keskar_repro.training.models import GhostBatchNorm
from keskar_repro.training.objective import cross_entropy, scale_pixels

N = 1000  # one batch = the whole subset: one step per epoch


def test_the_registry_names_every_method_and_refuses_an_unknown_one():
    assert list(methods.METHODS) == ["adam", "sgd", "sam", "conservative"]
    with pytest.raises(ValueError, match="unknown training method 'lamb'; registered: adam"):
        TrainConfig(method="lamb")


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"ghost_batch": 300, "batch_size": 256}, "ghost_batch=300 is invalid .*inside the batch"),
        ({"method": "sam", "sam_rho": 0.0}, r"sam_rho=0.0 is invalid \(> 0\)"),
        ({"warmup_epochs": 5, "epochs": 5, "lr_scaling": "linear"}, "warmup_epochs=5 is invalid"),
        ({"warmup_epochs": 2, "batch_size": 256}, "set lr_scaling"),
        ({"lr_scaling": "cube"}, "one of none, linear, sqrt"),
        ({"method": "conservative"}, "prox_steps=0 is invalid .*'conservative'"),
        ({"method": "adam", "prox_steps": 3}, "prox_steps=3 is invalid"),
        ({"method": "sgd", "momentum": 1.0}, "momentum=1.0 is invalid"),
        ({"lr_drops": (20, 10)}, r"lr_drops=\(20, 10\) is invalid \(increasing"),
        ({"lr_drops": (100,)}, "lr_drops=.100,. is invalid"),
        ({"weight_decay": -1.0}, "weight_decay=-1.0 is invalid"),
    ],
)
def test_impossible_settings_fail_with_one_line_naming_the_field(fields, match):
    with pytest.raises(ValueError, match=match) as error:
        TrainConfig(**fields)
    assert "\n" not in str(error.value)


def test_saved_runs_keep_their_hashes():
    default = TrainConfig()
    assert "method" not in default.to_dict() and default.method == "adam"
    assert TrainConfig(method="adam").to_dict() == default.to_dict()
    old_conservative = {**default.to_dict(), "prox_steps": 3}  # saved before `method` existed
    config = TrainConfig.from_dict(old_conservative)
    assert config.method == "conservative" and config.to_dict() == old_conservative
    assert TrainConfig(method="sam").to_dict()["method"] == "sam"
    assert TrainConfig(ghost_batch=128).to_dict()["ghost_batch"] == 128
    drops = TrainConfig(lr_drops=[10, 20]).to_dict()["lr_drops"]
    assert drops == [10, 20] and TrainConfig.from_dict(TrainConfig(lr_drops=(10,)).to_dict())


def test_learning_rate_scaling_with_the_batch_size():
    base = TrainConfig(batch_size=6400, learning_rate=1e-3)
    assert methods.learning_rate(base) == 1e-3
    linear = dataclasses.replace(base, lr_scaling="linear")
    assert methods.learning_rate(linear) == pytest.approx(0.025)  # 6400 / 256 = 25
    sqrt = dataclasses.replace(base, lr_scaling="sqrt")
    assert methods.learning_rate(sqrt) == pytest.approx(5e-3)
    state = initial_state(dataclasses.replace(sqrt, hidden=(8,)))
    assert float(state.opt_state.hyperparams["learning_rate"]) == pytest.approx(5e-3)


def _batch(small_data, config):
    """The epoch's one batch (its permutation of the subset) and the loss as the step sees it."""
    x, y = small_data.x_train[:N], np.asarray(small_data.y_train[:N], np.int32)
    shuffle_key = seed_keys(config.seed)[1]
    idx = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, 0), N))
    xb, yb, model = scale_pixels(x[idx]), y[idx], config.train_model()

    def loss(params, stats):
        logits, upd = model.apply({"params": params, "batch_stats": stats}, xb,
                                  use_running_average=False, mutable=["batch_stats"])  # fmt: skip
        return cross_entropy(logits, yb).mean(), upd["batch_stats"]

    return (x, y, shuffle_key), jax.value_and_grad(loss, has_aux=True)


def _epochs(config, data, k):
    x, y, shuffle_key = data
    epoch = jax.jit(make_epoch_fn(config, N))
    state = start = initial_state(config)
    for _ in range(k):
        state, _ = epoch(state, x, y, shuffle_key, 0)  # the same batch order each time
    return start, state


def _close(a, b, tol=2e-5):
    """Leafwise allclose, but for the pre-BN Dense bias: BN cancels it, its exact gradient is 0,
    and Adam's normalisation turns the rounding noise of its computed gradient into steps of
    +-lr (tests/test_train.py), which two ways of computing it do not share."""
    pairs = zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b), strict=True)
    for (path, u), v in pairs:
        if "Dense_0']['bias" not in jax.tree_util.keystr(path):
            np.testing.assert_allclose(u, v, rtol=tol, atol=tol)


def _moved(a, b) -> float:
    pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    return max(float(jnp.abs(u - v).max()) for u, v in pairs)


def test_sgd_steps_are_heavy_ball_momentum(small_data):
    config = TrainConfig(batch_size=N, hidden=(16,), method="sgd", learning_rate=0.1,
                         momentum=0.5)  # fmt: skip
    data, grad = _batch(small_data, config)
    start, state = _epochs(config, data, 2)
    p, stats, velocity = start.params, start.batch_stats, None
    for _ in range(2):  # v <- 0.5 v + g; x <- x - 0.1 v
        (_, stats), g = grad(p, stats)
        velocity = g if velocity is None else jax.tree_util.tree_map(
            lambda v, gi: 0.5 * v + gi, velocity, g)  # fmt: skip
        p = jax.tree_util.tree_map(lambda a, v: a - 0.1 * v, p, velocity)
    _close(state.params, p)
    _close(state.batch_stats, stats)


def test_warm_up_climbs_from_the_unscaled_to_the_scaled_rate(small_data):
    """k = 1000 / 250 = 4, two warm-up epochs of one step: the steps are scaled by 1/4, then
    1/4 + 3/4 x 1/2 = 5/8, then 1 (plain SGD: each update is -factor x 4 lr x g)."""
    config = TrainConfig(batch_size=N, hidden=(16,), method="sgd", momentum=0.0, epochs=5,
                         learning_rate=0.01, lr_scaling="linear", lr_base_batch=250,
                         warmup_epochs=2)  # fmt: skip
    data, grad = _batch(small_data, config)
    start, state = _epochs(config, data, 3)
    p, stats = start.params, start.batch_stats
    for factor in (0.25, 0.625, 1.0):
        (_, stats), g = grad(p, stats)
        p = jax.tree_util.tree_map(lambda a, gi, f=factor: a - f * 0.04 * gi, p, g)
    _close(state.params, p)


def test_weight_decay_and_learning_rate_drops(small_data):
    """Plain SGD, wd 0.01, a drop (x 0.1) after epoch 1: x1 = x0 - lr (g0 + wd x0), then
    x2 = x1 - 0.1 lr (g1 + wd x1)."""
    config = TrainConfig(batch_size=N, hidden=(16,), method="sgd", momentum=0.0, epochs=3,
                         learning_rate=0.05, weight_decay=0.01, lr_drops=(1,))  # fmt: skip
    data, grad = _batch(small_data, config)
    start, state = _epochs(config, data, 2)
    p, stats = start.params, start.batch_stats
    for lr in (0.05, 0.005):
        (_, stats), g = grad(p, stats)
        p = jax.tree_util.tree_map(lambda a, gi, lr=lr: a - lr * (gi + 0.01 * a), p, g)
    _close(state.params, p)


def test_sam_step_takes_adams_update_with_the_gradient_at_the_ascent_point(small_data):
    rho = 0.05
    config = TrainConfig(batch_size=N, hidden=(16,), method="sam", sam_rho=rho)
    data, grad = _batch(small_data, config)
    start, state = _epochs(config, data, 1)
    (_, stats), g = grad(start.params, start.batch_stats)
    norm = math.sqrt(sum(float(jnp.sum(x * x)) for x in jax.tree_util.tree_leaves(g)))
    ascent = jax.tree_util.tree_map(lambda a, gi: a + rho * gi / norm, start.params, g)
    (_, _), g_ascent = grad(ascent, start.batch_stats)
    adam = optax.adam(config.learning_rate)
    updates, _ = adam.update(g_ascent, adam.init(start.params), start.params)
    _close(state.params, optax.apply_updates(start.params, updates))
    _close(state.batch_stats, stats, tol=1e-6)  # the running averages of the pass at x only
    # and not the plain Adam step
    plain = dataclasses.replace(config, method="adam")
    _, adam_state = _epochs(plain, data, 1)
    assert _moved(adam_state.params["Dense_1"], state.params["Dense_1"]) > 1e-4


def _bn_pair(ghost: int, x: jax.Array):
    import flax.linen as nn

    plain, ghostly = nn.BatchNorm(momentum=0.9, epsilon=1e-3), GhostBatchNorm(ghost, 0.9, 1e-3)
    variables = plain.init(jax.random.key(0), x, use_running_average=False)
    outs = [m.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
            for m in (plain, ghostly)]  # fmt: skip
    return variables, outs


def test_ghost_batch_norm_over_the_whole_batch_is_batch_norm():
    x = jax.random.normal(jax.random.key(1), (12, 5)) * 3 + 1
    variables, (plain, ghost) = _bn_pair(12, x)
    _close(plain, ghost, tol=1e-5)
    _, (_, larger) = _bn_pair(64, x)  # a virtual batch larger than the batch: one group
    _close(plain, larger, tol=1e-5)
    running = GhostBatchNorm(12, 0.9, 1e-3).apply(variables, x, use_running_average=True)
    _close(running, jax.numpy.asarray(x) * (1 / math.sqrt(1 + 1e-3)), tol=1e-6)


def test_ghost_batch_norm_normalises_each_virtual_batch_and_averages_their_statistics():
    """A batch of 5 in virtual batches of 2: groups {0, 1}, {2, 3}, {4} (a lone example
    normalises to 0); the running averages move by (1 - 0.9) times the count-weighted means."""
    x = jnp.asarray([[1.0], [3.0], [-2.0], [2.0], [7.0]])
    _, (_, (y, new)) = _bn_pair(2, x)
    eps = 1e-3
    expected = [-1 / math.sqrt(1 + eps), 1 / math.sqrt(1 + eps), -2 / math.sqrt(4 + eps),
                2 / math.sqrt(4 + eps), 0.0]  # fmt: skip
    np.testing.assert_allclose(np.ravel(y), expected, rtol=1e-6, atol=1e-7)
    mean = (2 * 2.0 + 2 * 0.0 + 1 * 7.0) / 5  # the batch mean
    var = (2 * 1.0 + 2 * 4.0 + 1 * 0.0) / 5
    np.testing.assert_allclose(new["batch_stats"]["mean"], [0.1 * mean], rtol=1e-6)
    np.testing.assert_allclose(new["batch_stats"]["var"], [0.9 + 0.1 * var], rtol=1e-6)


def test_ghost_batch_norm_trains_and_is_measured_with_plain_batch_norm(small_data):
    config = TrainConfig(batch_size=500, hidden=(16,), ghost_batch=128)
    assert config.model().ghost_batch == 0 and config.train_model().ghost_batch == 128
    data, _ = _batch(small_data, config)
    x, y, shuffle_key = data
    epoch = jax.jit(make_epoch_fn(config, N))
    start = initial_state(config)
    state, (loss, _) = epoch(start, x, y, shuffle_key, 0)
    assert np.isfinite(float(loss))
    plain, _ = jax.jit(make_epoch_fn(dataclasses.replace(config, ghost_batch=0), N))(
        start, x, y, shuffle_key, 0)  # fmt: skip
    # virtual batches of 128 are not the batch of 500
    assert _moved(plain.params["Dense_1"], state.params["Dense_1"]) > 1e-5


def test_regime_adaptation_gives_the_large_batch_the_small_batchs_updates():
    lb = TrainConfig(batch_size=6000, epochs=100)
    adapted = methods.regime_adapted(lb, 256, 60000)  # 234 SB steps per epoch, 10 LB steps
    assert adapted.epochs == 2340 and adapted.batch_size == 6000
    assert methods.regime_adapted(lb, 6000, 60000) == lb
    hoffer = dataclasses.replace(lb, lr_drops=(10, 20, 30))  # the schedule stretches with it
    assert methods.regime_adapted(hoffer, 256, 60000).lr_drops == (234, 468, 702)
    with pytest.raises(ValueError, match="within the 5000 training examples"):
        methods.regime_adapted(lb, 256, 5000)
