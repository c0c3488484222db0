import dataclasses

import jax
import numpy as np
import pytest

from keskar_repro.train import TrainConfig, _stop_reason, init_state, train_runs, train_seeds


def leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


def train(config, data, seeds, **kw):
    return train_seeds(
        config, data.x_train, data.y_train, data.x_test, data.y_test, seeds, progress=False, **kw
    )


def test_sb_and_lb_share_the_initial_point_and_fresh_adam_state():
    sb = init_state(TrainConfig(batch_size=256, seed=3, hidden=(8,)))
    lb = init_state(TrainConfig(batch_size=800, seed=3, hidden=(8,)))
    other = init_state(TrainConfig(batch_size=256, seed=4, hidden=(8,)))
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


def test_training_is_deterministic(tiny_config, small_data):
    (a,) = train(tiny_config, small_data, [1])
    (b,) = train(tiny_config, small_data, [1])
    for x, y in zip(
        leaves((a.params, a.batch_stats)), leaves((b.params, b.batch_stats)), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    assert a.history["train_loss"] == b.history["train_loss"]


# The bias of a Dense layer followed by batch norm cannot change the network's output (BN
# subtracts it again), so its exact gradient is 0 and the computed one is rounding noise, which
# Adam's normalisation turns into steps of +-lr. These biases are excluded from the comparison;
# everything the network computes is compared.
PRE_BN_DENSE = ("Dense_0", "Dense_1")


def assert_same_runs(together, apart):
    for run_v, run_s in zip(together, apart, strict=True):
        assert run_v.config == run_s.config
        for name, layer in run_v.params.items():
            for leaf, x in layer.items():
                if name in PRE_BN_DENSE and leaf == "bias":
                    continue  # see above
                np.testing.assert_allclose(x, run_s.params[name][leaf], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(
            run_v.history["test_loss"], run_s.history["test_loss"], rtol=1e-4
        )


def test_vmapped_seeds_equal_seeds_trained_one_by_one(tiny_config, small_data):
    together = train(tiny_config, small_data, [0, 1, 2], vmap_seeds=True)
    apart = train(tiny_config, small_data, [0, 1, 2], vmap_seeds=False)
    assert_same_runs(together, apart)
    first, second = (leaves(r.params)[0] for r in together[:2])
    assert not np.allclose(first, second)


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
    ],
)
def test_impossible_settings_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_batch_larger_than_the_data_is_rejected(tiny_config, small_data):
    with pytest.raises(ValueError, match="batch_size=5000 exceeds"):
        train(dataclasses.replace(tiny_config, batch_size=5000), small_data, [0])


def test_paper_batch_sizes_keep_the_paper_ratio():
    from keskar_repro.train import paper_batch_sizes

    assert paper_batch_sizes(60000)[:2] == (256, 6000)
    sb, lb, note = paper_batch_sizes(8000)
    assert (sb, lb) == (34, 800) and "scaled from 256 to 34" in note
    assert paper_batch_sizes(8000, 100, 500)[:2] == (100, 500)
    with pytest.raises(ValueError, match="--lb-batch=9000 exceeds"):
        paper_batch_sizes(8000, None, 9000)


def test_learning_rate_grid_in_one_program_equals_separate_runs(tiny_config, small_data):
    grid = [
        dataclasses.replace(tiny_config, seed=seed, learning_rate=lr)
        for lr in (1e-4, 1e-3, 1e-2)
        for seed in (0, 1)
    ]
    data = (small_data.x_train, small_data.y_train, small_data.x_test, small_data.y_test)
    together = train_runs(grid, *data, progress=False)
    apart = [run for c in grid for run in train_runs([c], *data, progress=False)]
    assert_same_runs(together, apart)
    final_losses = [r.history["train_loss"][-1] for r in together]
    assert len(set(final_losses)) == len(grid)  # the learning rates did act


def test_runs_of_different_shapes_do_not_train_together(tiny_config, small_data):
    data = (small_data.x_train, small_data.y_train, small_data.x_test, small_data.y_test)
    other = dataclasses.replace(tiny_config, batch_size=50)
    with pytest.raises(ValueError, match="may differ only in seed, learning_rate"):
        train_runs([tiny_config, other], *data, progress=False)
