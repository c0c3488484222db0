import dataclasses

import jax
import numpy as np
import pytest

from keskar_repro.errors import DivergenceError, UserError
from keskar_repro.training.protocol import with_seeds
from keskar_repro.training.train import (
    KERNEL_NORM,
    LoopState,
    TrainConfig,
    _stop_reason,
    initial_state,
    stacked_initial_state,
    train_runs,
)


def leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


def train(config, data, seeds, *, one_by_one=False, **kw):
    """Train `config` for each seed: in one program, or one program per seed."""
    configs = with_seeds(config, seeds)
    splits = (data.x_train, data.y_train, data.x_test, data.y_test)
    if one_by_one:
        return [run for c in configs for run in train_runs([c], *splits, progress=False, **kw)]
    return train_runs(configs, *splits, progress=False, **kw)


def test_sb_and_lb_share_the_initial_point_and_fresh_adam_state():
    sb = initial_state(TrainConfig(batch_size=256, seed=3, hidden=(8,)))
    lb = initial_state(TrainConfig(batch_size=800, seed=3, hidden=(8,)))
    other = initial_state(TrainConfig(batch_size=256, seed=4, hidden=(8,)))
    for a, b in zip(leaves(sb), leaves(lb), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(leaves(sb.params), leaves(other.params), strict=True)
    )
    assert all(np.all(m == 0) for m in leaves(sb.opt_state.inner_state[0].mu))


def test_short_f1_run_on_mnist10k_reaches_sensible_accuracy(mnist10k):
    config = TrainConfig(dataset="mnist10k", batch_size=256, epochs=2)
    (run,) = train(config, mnist10k, [0])
    history = run.history
    assert run.epochs_run == 2 and len(history["test_accuracy"]) == 2
    assert history["train_loss"][1] < history["train_loss"][0]
    assert history["test_accuracy"][-1] > 0.94
    assert history["seconds"][1] > history["seconds"][0] > 0


def test_history_records_every_kernels_norm_after_each_epoch(tiny_config, small_data):
    config = dataclasses.replace(tiny_config, epochs=3)
    (run,) = train(config, small_data, [0])
    (one,) = train(dataclasses.replace(config, epochs=1), small_data, [0])
    dense = sorted(k for k in run.params if k.startswith("Dense_"))
    assert sorted(k for k in run.history if k.startswith(KERNEL_NORM)) == [
        KERNEL_NORM + d for d in dense
    ]
    for d in dense:
        norms = run.history[KERNEL_NORM + d]
        assert len(norms) == 3
        exact = np.linalg.norm(np.asarray(run.params[d]["kernel"], np.float64))
        np.testing.assert_allclose(norms[-1], exact, rtol=1e-6)
        after_one = np.linalg.norm(np.asarray(one.params[d]["kernel"], np.float64))
        np.testing.assert_allclose(norms[0], after_one, rtol=1e-6)


def test_training_is_deterministic(tiny_config, small_data):
    (a,) = train(tiny_config, small_data, [1])
    (b,) = train(tiny_config, small_data, [1])
    for x, y in zip(
        leaves((a.params, a.batch_stats)), leaves((b.params, b.batch_stats)), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    assert a.history["train_loss"] == b.history["train_loss"]


def assert_same_runs(together, apart, data):
    """Runs trained in one program equal runs trained alone up to float rounding: the same
    history and the same network function (logits on the test images). Parameters are not
    compared entry by entry: where an exact gradient is 0 or tiny (the pre-BN Dense biases,
    input pixels that are almost always 0) Adam's normalisation turns rounding noise into
    steps of +-lr, so those entries differ without changing what the network computes."""
    from keskar_repro.training.bn_policies import apply_model
    from keskar_repro.training.objective import scale_pixels

    x = scale_pixels(data.x_test)
    for run_v, run_s in zip(together, apart, strict=True):
        assert run_v.config == run_s.config
        for key in ("train_loss", "test_loss"):
            np.testing.assert_allclose(run_v.history[key], run_s.history[key], rtol=1e-4)
        logits = [
            apply_model(run_v.config.model(), variables(r), x, "batch") for r in (run_v, run_s)
        ]
        np.testing.assert_allclose(*logits, rtol=1e-2, atol=1e-2)  # logits are O(1)


def variables(run):
    return {"params": run.params, "batch_stats": run.batch_stats}


def test_vmapped_seeds_equal_seeds_trained_one_by_one(tiny_config, small_data):
    together = train(tiny_config, small_data, [0, 1, 2])
    apart = train(tiny_config, small_data, [0, 1, 2], one_by_one=True)
    assert_same_runs(together, apart, small_data)
    first, second = (leaves(r.params)[0] for r in together[:2])
    assert not np.allclose(first, second)


def test_runs_of_one_shape_share_one_compiled_epoch(tiny_config, small_data):
    # seed, learning rate and the data are arguments of the program, not constants in it
    from keskar_repro.training.train import _epoch_program

    config = dataclasses.replace(tiny_config, hidden=(24,))  # a shape no other test trains
    train(config, small_data, [0])
    train(dataclasses.replace(config, learning_rate=3e-3), small_data, [1])
    program = _epoch_program(config.shape_key(), 1, len(small_data.x_train))
    assert program._cache_size() == 1  # compiled once, for both runs


def test_patience_rule_stops_and_freezes_only_that_seed(small_data):
    config = TrainConfig(
        dataset="mnist10k",
        batch_size=100,
        epochs=6,
        hidden=(16,),
        stopping="patience",
        patience=1,
        min_rel_improvement=0.99,
    )
    runs = train(config, small_data, [0, 1])
    for run in runs:
        assert run.epochs_run == 2
        assert "did not fall below" in run.stop_reason


def test_stop_reason_rule():
    config = TrainConfig(stopping="patience", patience=2, min_rel_improvement=0.1)
    assert _stop_reason([1.0, 0.5, 0.3], config) == ""
    assert _stop_reason([1.0, 0.5, 0.46, 0.47], config) != ""  # 0.46 > 0.9 * 0.5
    assert _stop_reason([1.0, 0.5, 0.46, 0.44], config) == ""  # 0.44 < 0.45
    assert _stop_reason([1.0] * 10, dataclasses.replace(config, stopping="epochs")) == ""


@pytest.mark.parametrize(
    "field, value",
    [
        ("batch_size", 0),
        ("epochs", 0),
        ("learning_rate", -1.0),
        ("stopping", "never"),
        ("eval_bn_policy", "eval"),
        ("hidden", ()),
        ("warm_start", "run-without-epoch"),
        ("prox_steps", -1),
        ("prox_lambda", -1e-3),
    ],
)
def test_impossible_settings_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_batch_larger_than_the_data_is_rejected(tiny_config, small_data):
    with pytest.raises(UserError, match="batch_size=5000 exceeds"):
        train(dataclasses.replace(tiny_config, batch_size=5000), small_data, [0])


def test_learning_rate_grid_in_one_program_equals_separate_runs(tiny_config, small_data):
    grid = [
        dataclasses.replace(tiny_config, seed=seed, learning_rate=lr)
        for lr in (1e-4, 1e-3, 1e-2)
        for seed in (0, 1)
    ]
    data = (small_data.x_train, small_data.y_train, small_data.x_test, small_data.y_test)
    together = train_runs(grid, *data, progress=False)
    apart = [run for c in grid for run in train_runs([c], *data, progress=False)]
    assert_same_runs(together, apart, small_data)
    final_losses = [r.history["train_loss"][-1] for r in together]
    assert len(set(final_losses)) == len(grid)  # the learning rates did act


def test_runs_of_different_shapes_do_not_train_together(tiny_config, small_data):
    data = (small_data.x_train, small_data.y_train, small_data.x_test, small_data.y_test)
    other = dataclasses.replace(tiny_config, batch_size=50)
    with pytest.raises(ValueError, match="may differ only in seed, learning_rate"):
        train_runs([tiny_config, other], *data, progress=False)


def test_a_diverging_run_raises_or_is_stopped_and_marked(tiny_config, small_data):
    config = dataclasses.replace(tiny_config, learning_rate=1e30, epochs=3)
    with pytest.raises(DivergenceError, match="lower the learning rate"):
        train(config, small_data, [0])
    steady = dataclasses.replace(config, learning_rate=1e-3)
    runs = train_runs(
        [config, steady],
        small_data.x_train,
        small_data.y_train,
        small_data.x_test,
        small_data.y_test,
        progress=False,
        on_divergence="stop",
    )
    assert [r.diverged for r in runs] == [True, False]
    assert runs[0].epochs_run < 3 == runs[1].epochs_run


def test_loop_state_round_trips_through_a_checkpoint(tiny_config):
    state = stacked_initial_state(with_seeds(tiny_config, [0, 1]))
    loop = LoopState.start(state)
    loop.epoch, loop.seconds = 1, 2.5
    loop.histories[1]["train_loss"].append(0.25)
    loop.active[0], loop.stop_reasons[0], loop.diverged[0] = False, "diverged: test", True
    back = LoopState.from_checkpoint(loop.to_checkpoint(), state)
    assert (back.epoch, back.seconds, back.histories) == (1, 2.5, loop.histories)
    assert back.active.tolist() == [False, True] and back.diverged == [True, False]
    for a, b in zip(leaves(back.state), leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_authors_initialisation_is_the_default_and_hashes_stay_honest():
    """Keras 1's Dense default, glorot_uniform: kernels uniform in +-sqrt(6 / (fan_in +
    fan_out)), zero biases. Runs saved before the field existed (Flax's lecun_normal) keep
    their config dicts, hence their hashes."""
    config = TrainConfig(hidden=(512,))
    kernel = np.asarray(initial_state(config).params["Dense_0"]["kernel"])
    limit = np.sqrt(6 / (784 + 512))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.99 * limit
    np.testing.assert_allclose(kernel.var(), limit**2 / 3, rtol=0.01)  # a uniform's variance
    assert not np.any(initial_state(config).params["Dense_0"]["bias"])
    legacy = dataclasses.replace(config, init="lecun_normal")
    assert "init" not in legacy.to_dict() and config.to_dict()["init"] == "glorot_uniform"
    assert TrainConfig.from_dict(legacy.to_dict()) == legacy
    lecun = np.asarray(initial_state(legacy).params["Dense_0"]["kernel"])
    assert np.abs(lecun).max() > limit  # truncated normal of std 1/sqrt(784) reaches 2 std


def test_conservative_training_with_one_inner_iteration_is_plain_adam(tiny_config, small_data):
    """m = 1: the proximal term's gradient lambda (x - x_k) is 0 at x = x_k, so the step is the
    plain Adam step (up to XLA's rounding: the inner scan compiles differently)."""
    conservative = dataclasses.replace(
        tiny_config, method="conservative", prox_steps=1, prox_lambda=0.5
    )
    (plain,) = train(tiny_config, small_data, [0])
    (prox,) = train(conservative, small_data, [0])
    assert_same_runs([prox], [plain._replace(config=conservative)], small_data)
    assert conservative.to_dict()["prox_steps"] == 1 and "prox_steps" not in tiny_config.to_dict()


def test_conservative_step_is_m_adam_iterations_on_the_proximal_objective(small_data):
    """One batch (the whole training subset): the step must equal m optax Adam iterations on
    f_B(x) + (lambda/2)||x - x_0||^2 differentiated by autodiff, with the BN running averages
    updated at every iteration and one Adam state through all m."""
    import optax

    from keskar_repro.training.objective import cross_entropy, scale_pixels
    from keskar_repro.training.train import make_epoch_fn, seed_keys

    n, lam, m = 1000, 2.0, 3
    config = TrainConfig(batch_size=n, hidden=(16,), prox_steps=m, prox_lambda=lam)
    x, y = small_data.x_train[:n], np.asarray(small_data.y_train[:n], np.int32)
    state = initial_state(config)
    shuffle_key = seed_keys(config.seed)[1]
    new, (loss0, _) = jax.jit(make_epoch_fn(config, n))(state, x, y, shuffle_key, 0)

    idx = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, 0), n))
    xb, yb, model = scale_pixels(x[idx]), y[idx], config.model()
    x0, params, stats = state.params, state.params, state.batch_stats
    optimizer, opt_state = config.optimizer(), state.opt_state

    def objective(p, stats):
        logits, upd = model.apply(
            {"params": p, "batch_stats": stats}, xb, use_running_average=False, mutable=True
        )
        tl = jax.tree_util.tree_leaves
        prox = sum(jax.numpy.sum((a - b) ** 2) for a, b in zip(tl(p), tl(x0), strict=True))
        return cross_entropy(logits, yb).mean() + lam / 2 * prox, upd["batch_stats"]

    losses = []
    for _ in range(m):
        (value, stats_new), grads = jax.value_and_grad(objective, has_aux=True)(params, stats)
        losses.append(value)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params, stats = optax.apply_updates(params, updates), stats_new
    # The pre-BN Dense bias is left out: BN cancels it, its exact gradient is lambda (b - b_0)
    # ~ 0, and Adam's normalisation turns rounding noise there into steps of +-lr
    # (assert_same_runs). Its BN running mean moves with it, by momentum x lr: atol 2e-5.
    ours = jax.tree_util.tree_leaves_with_path((new.params, new.batch_stats))
    for (path, a), b in zip(ours, leaves((params, stats)), strict=True):
        if "Dense_0']['bias" not in jax.tree_util.keystr(path):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(loss0, losses[0], rtol=1e-6)  # f_B(x_0): the term is 0 there
    assert int(new.opt_state.inner_state[0].count) == m
    plain_m = dataclasses.replace(config, prox_lambda=0.0)
    far, _ = jax.jit(make_epoch_fn(plain_m, n))(state, x, y, shuffle_key, 0)
    pairs = zip(leaves(far.params), leaves(new.params), strict=True)
    moved = [np.abs(a - b).max() for a, b in pairs]
    assert max(moved) > 1e-5  # lambda = 2 held the iterates back
