import dataclasses
import os

import jax
import numpy as np
import pytest

import keskar_repro.store.runs as runs_module
from keskar_repro.errors import CorruptFileError, UserError
from keskar_repro.store.runs import (
    GroupCheckpoint,
    config_hash,
    get_or_train,
    load_run,
    load_snapshot,
    run_dir,
    save_run,
    saved_runs,
    snapshot_name,
    snapshot_path,
)
from keskar_repro.training.protocol import with_seeds
from keskar_repro.training.train import TrainConfig, initial_state, train_runs


def leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


def variables(run):
    return {"params": run.params, "batch_stats": run.batch_stats}


def get(config, data, seeds, root, **kw):
    return get_or_train(with_seeds(config, seeds), data, root=root, progress=False, **kw)


def train_alone(config, data, **kw):
    (run,) = train_runs(
        [config], data.x_train, data.y_train, data.x_test, data.y_test, progress=False, **kw
    )
    return run


def test_hash_depends_on_every_field(tiny_config):
    assert config_hash(tiny_config) == config_hash(dataclasses.replace(tiny_config))
    assert config_hash(tiny_config) != config_hash(dataclasses.replace(tiny_config, seed=1))
    assert config_hash(tiny_config) != config_hash(
        dataclasses.replace(tiny_config, learning_rate=2e-3)
    )


def test_save_load_round_trip(tmp_path, tiny_config, small_data):
    (run,) = get(tiny_config, small_data, [0], tmp_path)
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


def test_a_saved_run_is_readable_by_the_group_like_a_plain_mkdir(tmp_path, tiny_config, small_data):
    old = os.umask(0o022)
    try:
        (run,) = get(tiny_config, small_data, [0], tmp_path)
    finally:
        os.umask(old)
    folder = run_dir(run.config, tmp_path)
    assert folder.stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0o700
    assert {f.stat().st_mode & 0o777 for f in folder.iterdir() if f.is_file()} == {0o644}


def test_existing_runs_are_loaded_not_retrained(tmp_path, tiny_config, small_data, monkeypatch):
    first = get(tiny_config, small_data, [0, 1], tmp_path)

    def fail(*args, **kwargs):
        raise AssertionError("retrained a saved run")

    monkeypatch.setattr(runs_module, "train_runs", fail)
    again = get(tiny_config, small_data, [1, 0], tmp_path)
    assert [r.config.seed for r in again] == [1, 0]
    np.testing.assert_array_equal(leaves(first[0].params)[0], leaves(again[1].params)[0])


def test_interrupted_job_resumes_from_its_checkpoint(
    tmp_path, tiny_config, small_data, monkeypatch
):
    config = dataclasses.replace(tiny_config, epochs=4)
    reference = train_alone(config, small_data)

    def interrupted(*args, checkpoint, **kwargs):
        save = checkpoint.save

        def save_then_stop(loop, done):
            save(loop, done)
            if loop.epoch == 2:
                raise KeyboardInterrupt

        checkpoint.save = save_then_stop
        return train_runs(*args, checkpoint=checkpoint, **kwargs)

    monkeypatch.setattr(runs_module, "train_runs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        get(config, small_data, [0], tmp_path, checkpoint_seconds=0)
    assert not run_dir(config, tmp_path).exists()  # nothing half-written that would load
    assert list((tmp_path / "checkpoints").iterdir())

    epochs_seen = []

    def counting(*args, checkpoint, **kwargs):
        load = checkpoint.load
        checkpoint.load = lambda template: (
            epochs_seen.append(load(template).epoch) or load(template)
        )
        return train_runs(*args, checkpoint=checkpoint, **kwargs)

    monkeypatch.setattr(runs_module, "train_runs", counting)
    (resumed,) = get(config, small_data, [0], tmp_path)
    assert epochs_seen == [2]
    assert resumed.history["train_loss"] == reference.history["train_loss"]
    for a, b in zip(leaves(resumed.params), leaves(reference.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not list((tmp_path / "checkpoints").iterdir())


def test_saved_runs_lists_complete_runs_of_a_dataset(tmp_path, tiny_config, small_data):
    assert saved_runs(tmp_path / "absent") == []
    runs = get(tiny_config, small_data, [0, 1], tmp_path)
    paths = [run_dir(r.config, tmp_path) for r in runs]
    (tmp_path / f".{paths[0].name}.x.tmp").mkdir()  # a run being written
    (tmp_path / "checkpoints").mkdir(exist_ok=True)
    assert saved_runs(tmp_path) == sorted(paths)
    assert saved_runs(tmp_path, "mnist10k") == sorted(paths)
    assert saved_runs(tmp_path, "fashion_mnist") == []
    (paths[1] / "meta.json").unlink()  # incomplete: not listed
    assert saved_runs(tmp_path) == [paths[0]]


def test_incomplete_run_directory_does_not_load(tmp_path, tiny_config, small_data):
    (run,) = get(tiny_config, small_data, [0], tmp_path)
    path = run_dir(run.config, tmp_path)
    (path / "variables.msgpack").unlink()
    with pytest.raises(CorruptFileError, match="incomplete"):
        load_run(path)
    (path / "variables.msgpack").write_bytes(b"not msgpack")
    with pytest.raises(CorruptFileError, match="variables.msgpack"):
        load_run(path)


def test_save_is_atomic_when_writing_fails(tmp_path, tiny_config, small_data, monkeypatch):
    run = train_alone(tiny_config, small_data)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(runs_module, "write_json", broken)
    with pytest.raises(OSError):
        save_run(run, small_data.provenance, tmp_path)
    assert not list(tmp_path.iterdir())


def test_dataset_mismatch_is_rejected(tmp_path, tiny_config, small_data):
    with pytest.raises(ValueError, match="config.dataset"):
        get(dataclasses.replace(tiny_config, dataset="mnist"), small_data, [0], tmp_path)


def test_snapshot_after_k_epochs_equals_a_k_epoch_run(tmp_path, tiny_config, small_data):
    config = dataclasses.replace(tiny_config, epochs=3)
    (run,) = get(config, small_data, [0], tmp_path, snapshot_epochs=(0, 2, 3))
    (two_epochs,) = get(dataclasses.replace(config, epochs=2), small_data, [0], tmp_path)
    snap2, snap3 = (load_snapshot(config, e, tmp_path) for e in (2, 3))
    for a, b in zip(leaves(snap2), leaves(variables(two_epochs)), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(leaves(snap3), leaves(variables(run)), strict=True):
        np.testing.assert_array_equal(a, b)
    initial = initial_state(config)
    for a, b in zip(
        leaves(load_snapshot(config, 0, tmp_path)["params"]), leaves(initial.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(UserError, match="snapshot_epochs including 1"):
        load_snapshot(config, 1, tmp_path)


def test_saved_run_retrained_for_snapshots_keeps_its_measurements(
    tmp_path, tiny_config, small_data
):
    (run,) = get(tiny_config, small_data, [0], tmp_path)
    path = run_dir(run.config, tmp_path)
    marker = path / "measurements" / "kept.json"
    marker.parent.mkdir()
    marker.write_text("{}")
    get(tiny_config, small_data, [0], tmp_path, snapshot_epochs=[1])
    assert marker.is_file() and snapshot_path(run.config, 1, tmp_path).is_file()
    assert not list((tmp_path / "checkpoints").iterdir())


def test_warm_start_continues_from_the_snapshot_with_fresh_adam(tmp_path, tiny_config, small_data):
    """SB for k epochs, then LB: the LB run starts exactly at the SB snapshot; k = 0 is the
    plain LB run (same initial point, same data order)."""
    sb = dataclasses.replace(tiny_config, batch_size=50, epochs=2)
    (sb_run,) = get(sb, small_data, [0], tmp_path, snapshot_epochs=[0, 1])
    name = run_dir(sb_run.config, tmp_path).name
    lb = dataclasses.replace(tiny_config, batch_size=500, epochs=2)
    warm = [dataclasses.replace(lb, warm_start=f"{name}@{k}") for k in (0, 1)]
    from_init, from_one = get_or_train(warm, small_data, root=tmp_path, progress=False)
    (plain,) = get(lb, small_data, [0], tmp_path)
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
    # trained alone in both cases (one run per program on a CPU), so exactly equal there
    np.testing.assert_allclose(
        from_one.history["train_loss"], by_hand.history["train_loss"], rtol=1e-5
    )
    assert all(np.all(m == 0) for m in leaves(state.opt_state.inner_state[0].mu))
    assert from_one.history["train_loss"][0] < from_init.history["train_loss"][0]
    missing = dataclasses.replace(lb, warm_start=f"{name}@2")
    with pytest.raises(UserError, match="snapshot at epoch 2"):
        get_or_train([missing], small_data, root=tmp_path, progress=False)


def _train_in_subprocess(root, seed_file):
    """A second process asking for the same run (tests/test_runs.py::test_two_processes...)."""
    import subprocess
    import sys

    code = (
        "import sys; sys.path.insert(0, 'tests'); from conftest import tiny_runs_job; "
        f"tiny_runs_job({str(root)!r}, {str(seed_file)!r})"
    )
    return subprocess.Popen([sys.executable, "-c", code])


def test_two_processes_sharing_a_runs_dir_train_each_run_once(tmp_path, tiny_config, small_data):
    """Two processes ask for the same run at once: one trains it, the other waits on its lock
    and loads it; neither crashes and both see the same variables."""
    from conftest import tiny_runs_job

    other = _train_in_subprocess(tmp_path / "runs", tmp_path / "other.json")
    mine = tiny_runs_job(str(tmp_path / "runs"), str(tmp_path / "mine.json"))
    assert other.wait(timeout=300) == 0
    import json

    theirs = json.loads((tmp_path / "other.json").read_text())
    assert theirs == mine
    assert len(list((tmp_path / "runs").glob("mnist10k-*"))) == 1


def test_snapshots_of_a_vmapped_run_come_from_its_own_group(tmp_path, tiny_config, small_data):
    """Two seeds trained in one program, then seed 1's snapshots asked for alone: the retraining
    runs the original pair again, so the snapshots end exactly at the saved variables."""
    pair = get(tiny_config, small_data, [0, 1], tmp_path, runs_per_program=2)
    meta = load_run(run_dir(pair[1].config, tmp_path))[1]
    assert [c["seed"] for c in meta["trained_with"]] == [0, 1]
    (again,) = get(tiny_config, small_data, [1], tmp_path, snapshot_epochs=[1, 2])
    last = load_snapshot(again.config, 2, tmp_path)
    for a, b in zip(leaves(last), leaves(variables(pair[1])), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_corrupt_checkpoint_is_named(tmp_path, tiny_config):
    path = tmp_path / "checkpoints" / "group.msgpack"
    path.parent.mkdir()
    path.write_bytes(b"\x00garbage")
    with pytest.raises(CorruptFileError, match="group.msgpack"):
        GroupCheckpoint(path, 0.0).load(initial_state(tiny_config))


def test_snapshot_names_are_spelled_once():
    assert snapshot_name(5) == "epoch-0005"
    assert snapshot_path(TrainConfig(), 5, "r").name == "epoch-0005.msgpack"
