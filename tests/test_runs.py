import dataclasses
import json

import jax
import numpy as np
import pytest

import keskar_repro.runs as runs_module
from keskar_repro.runs import (
    config_hash,
    get_or_train,
    get_or_train_runs,
    load_run,
    load_snapshot,
    run_dir,
    save_run,
    snapshot_path,
)
from keskar_repro.train import init_state, initial_state, train_runs, train_seeds


def leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


def variables(run):
    return {"params": run.params, "batch_stats": run.batch_stats}


def test_hash_depends_on_every_field(tiny_config):
    assert config_hash(tiny_config) == config_hash(dataclasses.replace(tiny_config))
    assert config_hash(tiny_config) != config_hash(dataclasses.replace(tiny_config, seed=1))
    assert config_hash(tiny_config) != config_hash(
        dataclasses.replace(tiny_config, learning_rate=2e-3)
    )


def test_save_load_round_trip(tmp_path, tiny_config, small_data):
    (run,) = get_or_train(tiny_config, small_data, [0], root=tmp_path, progress=False)
    loaded, meta = load_run(run_dir(run.config, tmp_path))
    assert loaded.config == run.config
    assert loaded.history == run.history
    for a, b in zip(
        leaves((run.params, run.batch_stats)),
        leaves((loaded.params, loaded.batch_stats)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert meta["dataset"]["name"] == "mnist10k"
    assert meta["versions"]["jax"] and meta["device"]["platform"]


def test_existing_runs_are_loaded_not_retrained(tmp_path, tiny_config, small_data, monkeypatch):
    first = get_or_train(tiny_config, small_data, [0, 1], root=tmp_path, progress=False)

    def fail(*args, **kwargs):
        raise AssertionError("retrained a saved run")

    monkeypatch.setattr(runs_module, "train_runs", fail)
    again = get_or_train(tiny_config, small_data, [1, 0], root=tmp_path, progress=False)
    assert [r.config.seed for r in again] == [1, 0]
    np.testing.assert_array_equal(leaves(first[0].params)[0], leaves(again[1].params)[0])


def test_interrupted_job_resumes_from_its_checkpoint(
    tmp_path, tiny_config, small_data, monkeypatch
):
    config = dataclasses.replace(tiny_config, epochs=4)
    (reference,) = train_seeds(
        config,
        small_data.x_train,
        small_data.y_train,
        small_data.x_test,
        small_data.y_test,
        [0],
        progress=False,
    )

    def interrupted(*args, on_epoch_end, **kwargs):
        def hook(ckpt):
            on_epoch_end(ckpt)
            if ckpt["epoch"] == 2:
                raise KeyboardInterrupt

        return train_runs(*args, on_epoch_end=hook, **kwargs)

    monkeypatch.setattr(runs_module, "train_runs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        get_or_train(config, small_data, [0], root=tmp_path, progress=False, checkpoint_seconds=0)
    assert not run_dir(config, tmp_path).exists()  # nothing half-written that would load
    assert list((tmp_path / "checkpoints").iterdir())

    epochs_seen = []

    def counting(*args, resume, **kwargs):
        epochs_seen.append(resume["epoch"])
        return train_runs(*args, resume=resume, **kwargs)

    monkeypatch.setattr(runs_module, "train_runs", counting)
    (resumed,) = get_or_train(config, small_data, [0], root=tmp_path, progress=False)
    assert epochs_seen == [2]
    assert resumed.history["train_loss"] == reference.history["train_loss"]
    for a, b in zip(leaves(resumed.params), leaves(reference.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not list((tmp_path / "checkpoints").iterdir())


def test_incomplete_run_directory_does_not_load(tmp_path, tiny_config, small_data):
    (run,) = get_or_train(tiny_config, small_data, [0], root=tmp_path, progress=False)
    path = run_dir(run.config, tmp_path)
    (path / "variables.msgpack").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        load_run(path)


def test_save_is_atomic_when_writing_fails(tmp_path, tiny_config, small_data, monkeypatch):
    (run,) = train_seeds(
        tiny_config,
        small_data.x_train,
        small_data.y_train,
        small_data.x_test,
        small_data.y_test,
        [0],
        progress=False,
    )

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(runs_module, "_write_json", broken)
    with pytest.raises(OSError):
        save_run(run, small_data.provenance, tmp_path)
    assert not list(tmp_path.iterdir())


def test_dataset_mismatch_is_rejected(tmp_path, tiny_config, small_data):
    with pytest.raises(ValueError, match="config.dataset"):
        get_or_train(
            dataclasses.replace(tiny_config, dataset="mnist"), small_data, [0], root=tmp_path
        )


def test_snapshot_after_k_epochs_equals_a_k_epoch_run(tmp_path, tiny_config, small_data):
    config = dataclasses.replace(tiny_config, epochs=3)
    (run,) = get_or_train(
        config, small_data, [0], root=tmp_path, progress=False, snapshot_epochs=(0, 2, 3)
    )
    (two_epochs,) = get_or_train(
        dataclasses.replace(config, epochs=2), small_data, [0], root=tmp_path, progress=False
    )
    snap2, snap3 = (load_snapshot(config, e, tmp_path) for e in (2, 3))
    for a, b in zip(leaves(snap2), leaves(variables(two_epochs)), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(leaves(snap3), leaves(variables(run)), strict=True):
        np.testing.assert_array_equal(a, b)
    initial = init_state(config)
    for a, b in zip(
        leaves(load_snapshot(config, 0, tmp_path)["params"]), leaves(initial.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError, match="snapshot_epochs including 1"):
        load_snapshot(config, 1, tmp_path)


def test_saved_run_retrained_for_snapshots_keeps_its_measurements(
    tmp_path, tiny_config, small_data
):
    (run,) = get_or_train(tiny_config, small_data, [0], root=tmp_path, progress=False)
    path = run_dir(run.config, tmp_path)
    marker = path / "measurements" / "kept.json"
    marker.parent.mkdir()
    marker.write_text("{}")
    get_or_train(tiny_config, small_data, [0], root=tmp_path, progress=False, snapshot_epochs=[1])
    assert marker.is_file() and snapshot_path(run.config, 1, tmp_path).is_file()
    note = json.loads((path / "snapshots" / "trajectory.json").read_text())
    assert note["final_matches_saved_run"] and note["trained_with"] == [path.name]
    assert not list((tmp_path / "checkpoints").iterdir())


def test_warm_start_continues_from_the_snapshot_with_fresh_adam(tmp_path, tiny_config, small_data):
    """SB for k epochs, then LB: the LB run starts exactly at the SB snapshot; k = 0 is the
    plain LB run (same initial point, same data order)."""
    sb = dataclasses.replace(tiny_config, batch_size=50, epochs=2)
    (sb_run,) = get_or_train(
        sb, small_data, [0], root=tmp_path, progress=False, snapshot_epochs=[0, 1]
    )
    name = run_dir(sb_run.config, tmp_path).name
    lb = dataclasses.replace(tiny_config, batch_size=500, epochs=2)
    warm = [dataclasses.replace(lb, warm_start=f"{name}@{k}") for k in (0, 1)]
    from_init, from_one = get_or_train_runs([*warm], small_data, root=tmp_path, progress=False)
    (plain,) = get_or_train(lb, small_data, [0], root=tmp_path, progress=False)
    np.testing.assert_allclose(
        from_init.history["train_loss"], plain.history["train_loss"], rtol=1e-4
    )
    snapshot = load_snapshot(sb, 1, tmp_path)
    state = initial_state(warm[1], snapshot)
    (by_hand,) = train_runs(
        [warm[1]],
        small_data.x_train,
        small_data.y_train,
        small_data.x_test,
        small_data.y_test,
        initial_variables=[snapshot],
        progress=False,
    )
    # trained in a group of two vs alone: equal up to float32 rounding
    np.testing.assert_allclose(
        from_one.history["train_loss"], by_hand.history["train_loss"], rtol=1e-5
    )
    assert all(np.all(m == 0) for m in leaves(state.opt_state.inner_state[0].mu))
    assert from_one.history["train_loss"][0] < from_init.history["train_loss"][0]
    missing = dataclasses.replace(lb, warm_start=f"{name}@2")
    with pytest.raises(FileNotFoundError, match="snapshot at epoch 2"):
        get_or_train_runs([missing], small_data, root=tmp_path, progress=False)
