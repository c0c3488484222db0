"""Trained runs on disk: one directory per (config, seed), named by a hash of the config.

A run directory holds

    config.json        the TrainConfig (its sha256 names the directory)
    variables.msgpack  {"params", "batch_stats"} (flax.serialization msgpack)
    history.json       per-epoch train/test loss and accuracy, minibatch averages, wall time
    meta.json          dataset provenance, package versions, device, epochs run, stop reason
    snapshots/         epoch-<k>.msgpack: the variables after k epochs, when asked for
    measurements/      cached measurements of the run (see measurements.py)

Writes are atomic: a run is written into a temporary sibling directory and renamed into place
as the last step, so a killed process never leaves a directory that loads. `get_or_train` loads
the runs that exist and trains only the missing seeds (together, vmapped); while it trains it
checkpoints the whole group (parameters, Adam state, history) at most every
`checkpoint_seconds`, so an interrupted job resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import flax.serialization
import jax

from keskar_repro.train import TrainConfig, TrainedRun, train_runs

RUN_FILES = ("config.json", "variables.msgpack", "history.json", "meta.json")


def default_runs_dir() -> Path:
    """`$KESKAR_REPRO_RUNS`, else ./runs (relative to the working directory)."""
    return Path(os.environ.get("KESKAR_REPRO_RUNS", "runs"))


def config_hash(config: TrainConfig) -> str:
    """First 16 hex digits of the sha256 of the config's canonical JSON."""
    blob = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_dir(config: TrainConfig, root: str | os.PathLike | None = None) -> Path:
    """Directory of the run of `config`: <root>/<dataset>-b<batch>-s<seed>-<hash>."""
    root = Path(root) if root is not None else default_runs_dir()
    name = f"{config.dataset}-b{config.batch_size}-s{config.seed}-{config_hash(config)}"
    return root / name


def environment() -> dict[str, Any]:
    """Versions of the packages that shape a result, and the device that computed it."""
    versions = {}
    for package in ("keskar-repro", "jax", "jaxlib", "flax", "optax", "numpy", "scipy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    device = jax.devices()[0]
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": {
            "platform": device.platform,
            "kind": device.device_kind,
            "count": jax.device_count(),
        },
    }


def _atomic_dir(final: Path):
    """A fresh temporary directory beside `final`, to be renamed onto it when complete."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True))


def save_run(
    run: TrainedRun,
    provenance: dict,
    root: str | os.PathLike | None = None,
    *,
    snapshots: Path | None = None,
) -> Path:
    """Write `run` atomically and return its directory (an existing one is replaced).

    `snapshots`, a folder of epoch-<k>.msgpack files, becomes the run's snapshots/ folder."""
    final = run_dir(run.config, root)
    tmp = _atomic_dir(final)
    try:
        if snapshots is not None and snapshots.is_dir():
            shutil.copytree(snapshots, tmp / "snapshots")
        _write_json(tmp / "config.json", run.config.to_dict())
        variables = {"params": run.params, "batch_stats": run.batch_stats}
        (tmp / "variables.msgpack").write_bytes(flax.serialization.msgpack_serialize(variables))
        _write_json(tmp / "history.json", run.history)
        meta = {
            "epochs_run": run.epochs_run,
            "stop_reason": run.stop_reason,
            "train_seconds": run.train_seconds,
            "dataset": provenance,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **environment(),
        }
        _write_json(tmp / "meta.json", meta)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_run(path: str | os.PathLike) -> tuple[TrainedRun, dict]:
    """(run, meta) from a run directory; a clear error if it is incomplete or corrupt."""
    path = Path(path)
    missing = [f for f in RUN_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"run {path} is incomplete (missing {missing}); delete it")
    try:
        config = TrainConfig.from_dict(json.loads((path / "config.json").read_text()))
        raw = (path / "variables.msgpack").read_bytes()
        variables = flax.serialization.msgpack_restore(raw)
        history = json.loads((path / "history.json").read_text())
        meta = json.loads((path / "meta.json").read_text())
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"run {path} is corrupt ({err}); delete it to retrain") from err
    run = TrainedRun(
        config=config,
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        history=history,
        epochs_run=int(meta["epochs_run"]),
        stop_reason=meta["stop_reason"],
        train_seconds=float(meta["train_seconds"]),
    )
    return run, meta


def cached_measurement(
    path: str | os.PathLike, kind: str, spec: dict, compute: Callable[[], dict]
) -> dict:
    """A measurement of the run at `path`, computed once and kept beside it.

    Stored as <path>/measurements/<kind>-<sha256(spec)[:16]>.json holding {"spec", "result"};
    `compute()` returns the JSON-ready result. The file is written atomically, so an interrupted
    sweep of measurements resumes where it stopped.
    """
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    target = (
        Path(path)
        / "measurements"
        / f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}.json"
    )
    if target.is_file():
        try:
            return json.loads(target.read_text())["result"]
        except (ValueError, KeyError):
            target.unlink()  # unreadable: recompute
    result = compute()
    write_atomic(target, json.dumps({"spec": spec, "result": result}, indent=1).encode())
    return result


def _checkpoint_path(configs: Sequence[TrainConfig], root: Path) -> Path:
    names = ",".join(sorted(run_dir(c, root).name for c in configs))
    tag = hashlib.sha256(names.encode()).hexdigest()[:16]
    return root / "checkpoints" / f"{configs[0].dataset}-b{configs[0].batch_size}-{tag}.msgpack"


def snapshot_path(config: TrainConfig, epoch: int, root: str | os.PathLike | None = None) -> Path:
    """<run dir>/snapshots/epoch-<epoch>.msgpack: the run's variables after `epoch` epochs."""
    return run_dir(config, root) / "snapshots" / f"epoch-{epoch:04d}.msgpack"


def load_snapshot(
    config: TrainConfig, epoch: int, root: str | os.PathLike | None = None
) -> dict[str, Any]:
    """{"params", "batch_stats"} of `config`'s run after `epoch` epochs (0: the initial point)."""
    path = snapshot_path(config, epoch, root)
    if not path.is_file():
        raise FileNotFoundError(
            f"no snapshot {path}; train the run with snapshot_epochs including {epoch}"
        )
    return flax.serialization.msgpack_restore(path.read_bytes())


def _warm_start_variables(config: TrainConfig, root: Path) -> dict | None:
    source = config.warm_start_source
    if source is None:
        return None
    name, epoch = source
    path = root / name / "snapshots" / f"epoch-{epoch:04d}.msgpack"
    if not path.is_file():
        raise FileNotFoundError(
            f"warm start {config.warm_start!r} needs {path}; train run {name} with a snapshot "
            f"at epoch {epoch} first"
        )
    return flax.serialization.msgpack_restore(path.read_bytes())


def write_atomic(path: str | os.PathLike, blob: bytes | str) -> None:
    """Write `blob` to `path` through a temporary file and a rename: all or nothing."""
    path = Path(path)
    if isinstance(blob, str):
        blob = blob.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _read_checkpoint(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        ckpt = flax.serialization.msgpack_restore(path.read_bytes())
        histories = json.loads(ckpt["meta"])
    except Exception:  # a checkpoint is an optimisation: an unreadable one is ignored
        return None
    return {"state": ckpt["state"], **histories}


def get_or_train(
    config: TrainConfig,
    dataset,
    seeds: Sequence[int],
    *,
    root: str | os.PathLike | None = None,
    vmap_seeds: bool = True,
    progress: bool = True,
    checkpoint_seconds: float = 60.0,
    snapshot_epochs: Sequence[int] = (),
) -> list[TrainedRun]:
    """The runs of `config` for each seed: loaded when saved, else trained, saved and returned.

    Missing seeds train together (one by one without `vmap_seeds`); see `get_or_train_runs`.
    """
    configs = [dataclasses.replace(config, seed=int(s)) for s in seeds]
    if not configs:
        raise ValueError("seeds is empty: give at least one seed")
    return get_or_train_runs(
        configs,
        dataset,
        root=root,
        group_size=None if vmap_seeds else 1,
        progress=progress,
        checkpoint_seconds=checkpoint_seconds,
        snapshot_epochs=snapshot_epochs,
    )


def get_or_train_runs(
    configs: Sequence[TrainConfig],
    dataset,
    *,
    root: str | os.PathLike | None = None,
    group_size: int | None = None,
    progress: bool = True,
    checkpoint_seconds: float = 60.0,
    snapshot_epochs: Sequence[int] = (),
    on_divergence: str = "raise",
) -> list[TrainedRun]:
    """The run of each config: loaded when saved (with every snapshot asked for), else trained.

    `dataset` is a keskar_repro.data.Dataset whose name must equal each config's dataset. The
    missing runs are grouped by `TrainConfig.shape_key()` (configs that differ only in seed,
    learning rate and warm start) and each group, up to `group_size` runs, trains in one
    compiled program, checkpointed at most every `checkpoint_seconds` and resumed from its
    checkpoint after an interruption. Warm starts load their source snapshot from `root`.
    A saved run that lacks a snapshot in `snapshot_epochs` is retrained (training is
    deterministic) and only its snapshots are added. `on_divergence` is as in `train_runs`.
    """
    root = Path(root) if root is not None else default_runs_dir()
    for config in configs:
        if dataset.name != config.dataset:
            raise ValueError(
                f"config.dataset={config.dataset!r} but the dataset given is {dataset.name!r}"
            )
    snapshot_epochs = sorted({int(e) for e in snapshot_epochs})
    runs: dict[str, TrainedRun] = {}
    missing: dict[TrainConfig, list[TrainConfig]] = {}
    seen: set[str] = set()
    for config in configs:
        path = run_dir(config, root)
        if path.name in seen:
            continue
        seen.add(path.name)
        complete = all(snapshot_path(config, e, root).is_file() for e in snapshot_epochs)
        if path.is_dir() and complete:
            runs[path.name] = load_run(path)[0]
        else:
            missing.setdefault(config.shape_key(), []).append(config)
    for group in missing.values():
        size = group_size or len(group)
        for start in range(0, len(group), size):
            chunk = group[start : start + size]
            for run in _train_group(
                chunk, dataset, root, progress, checkpoint_seconds, snapshot_epochs, on_divergence
            ):
                runs[run_dir(run.config, root).name] = run
    return [runs[run_dir(c, root).name] for c in configs]


def _train_group(
    configs: list[TrainConfig],
    dataset,
    root: Path,
    progress: bool,
    checkpoint_seconds: float,
    snapshot_epochs: list[int],
    on_divergence: str,
) -> list[TrainedRun]:
    """Train `configs` together, checkpointing and resuming through one checkpoint file, then
    save each run with its snapshots."""
    ckpt_path = _checkpoint_path(configs, root)
    staging = ckpt_path.with_suffix(".snapshots")
    epochs = configs[0].epochs
    last_save = [time.monotonic()]

    def save_checkpoint(ckpt: dict) -> None:
        done = ckpt["epoch"] == epochs or not any(ckpt["active"])
        if done or time.monotonic() - last_save[0] < checkpoint_seconds:
            return
        meta = {k: ckpt[k] for k in ("epoch", "histories", "active", "stop_reasons", "seconds")}
        blob = {"state": ckpt["state"], "meta": json.dumps(meta)}
        write_atomic(ckpt_path, flax.serialization.msgpack_serialize(blob))
        last_save[0] = time.monotonic()

    def save_snapshots(epoch: int, variables: list[dict]) -> None:
        for config, v in zip(configs, variables, strict=True):
            target = staging / run_dir(config, root).name / f"epoch-{epoch:04d}.msgpack"
            write_atomic(target, flax.serialization.msgpack_serialize(v))

    trained = train_runs(
        configs,
        dataset.x_train,
        dataset.y_train,
        dataset.x_test,
        dataset.y_test,
        initial_variables=[_warm_start_variables(c, root) for c in configs],
        snapshot_epochs=snapshot_epochs,
        on_snapshot=save_snapshots,
        progress=progress,
        resume=_read_checkpoint(ckpt_path),
        on_epoch_end=save_checkpoint,
        on_divergence=on_divergence,
    )
    group = [run_dir(c, root).name for c in configs]
    for run in trained:
        path = run_dir(run.config, root)
        if path.is_dir():  # a saved run retrained for its snapshots: it stays, snapshots are added
            _add_snapshots(path, staging / path.name, run, group)
        else:
            save_run(run, dataset.provenance, root, snapshots=staging / path.name)
    ckpt_path.unlink(missing_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    return trained


def _add_snapshots(path: Path, snapshots: Path, retrained: TrainedRun, group: list[str]) -> None:
    """Move the snapshots of a retraining into the saved run at `path`, noting in
    snapshots/trajectory.json whether the retraining ended exactly at the saved parameters: a
    different group of runs vmapped together rounds differently, and 100 epochs amplify that,
    so the snapshots are a trajectory of the same configuration, not always of the saved run."""
    target = path / "snapshots"
    target.mkdir(exist_ok=True)
    for f in sorted(snapshots.iterdir()):
        os.replace(f, target / f.name)
    note = {
        "trained_with": group,
        "final_matches_saved_run": _same_variables(load_run(path)[0], retrained),
        "final_epoch": retrained.epochs_run,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_atomic(target / "trajectory.json", json.dumps(note, indent=1))


def _same_variables(a: TrainedRun, b: TrainedRun) -> bool:
    import numpy as np

    leaves_a = jax.tree_util.tree_leaves((a.params, a.batch_stats))
    leaves_b = jax.tree_util.tree_leaves((b.params, b.batch_stats))
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(leaves_a, leaves_b, strict=True)
    )
