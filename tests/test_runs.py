import dataclasses

import jax
import numpy as np
import pytest

import keskar_repro.runs as runs_module
from keskar_repro.runs import config_hash, get_or_train, load_run, run_dir, save_run
from keskar_repro.train import train_seeds


def leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


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

    monkeypatch.setattr(runs_module, "train_seeds", fail)
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

        return train_seeds(*args, on_epoch_end=hook, **kwargs)

    monkeypatch.setattr(runs_module, "train_seeds", interrupted)
    with pytest.raises(KeyboardInterrupt):
        get_or_train(config, small_data, [0], root=tmp_path, progress=False, checkpoint_seconds=0)
    assert not run_dir(config, tmp_path).exists()  # nothing half-written that would load
    assert list((tmp_path / "checkpoints").iterdir())

    epochs_seen = []

    def counting(*args, resume, **kwargs):
        epochs_seen.append(resume["epoch"])
        return train_seeds(*args, resume=resume, **kwargs)

    monkeypatch.setattr(runs_module, "train_seeds", counting)
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
