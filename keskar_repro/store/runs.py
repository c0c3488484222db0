"""The run store: trained runs on disk, one directory per (config, seed), named by a config hash.

A run directory holds

    config.json        the TrainConfig (its sha256 names the directory)
    variables.msgpack  {"params", "batch_stats"} (flax.serialization msgpack)
    history.json       per-epoch train/test loss and accuracy, minibatch averages, wall time
    meta.json          dataset provenance, versions, device, epochs run, whether it diverged,
                       and the group of runs it was trained with in one compiled program
    snapshots/         epoch-<k>.msgpack: the variables after k epochs, when asked for
    measurements/      cached measurements of the run (see measurements.py)

Writes are atomic: a run is written into a temporary sibling directory and renamed into place
as the last step, so a killed process never leaves a directory that loads. `get_or_train` loads
the runs that exist and trains only the missing ones, in groups of `runs_per_program` runs per
compiled program (default: `train.default_runs_per_program()`); while a group trains it is
checkpointed (parameters, Adam state, history) at most every `checkpoint_seconds`, so an
interrupted job resumes from its last checkpoint. Two processes sharing a runs directory never
train the same run at once: each run is locked while it trains (`files.file_lock`), the second
process waits and then loads what the first saved. A saved run that lacks a snapshot is trained
again together with the same group it was first trained with, so the retraining follows the
saved run's float trajectory exactly and its snapshots belong to the saved run.

In a multi-process job (keskar_repro.devices.distributed) every process trains every missing run
(each runs its part of the one SPMD program), and only the primary process locks, checkpoints and
saves; which runs are missing, and whether a checkpoint exists, is the primary's answer on
every process, and every process loads the saved runs once the primary has written them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np

from keskar_repro.devices.distributed import agree, barrier, is_primary
from keskar_repro.errors import CorruptFileError, UserError
from keskar_repro.store.files import (
    environment,
    file_lock,
    published_mode,
    read_json,
    spec_hash,
    write_atomic,
    write_json,
)
from keskar_repro.training.train import (
    LoopState,
    TrainConfig,
    TrainedRun,
    TrainState,
    default_runs_per_program,
    train_runs,
)

RUN_FILES = ("config.json", "variables.msgpack", "history.json", "meta.json")


def default_runs_dir() -> Path:
    """`$KESKAR_REPRO_RUNS`, else ./runs (relative to the working directory)."""
    return Path(os.environ.get("KESKAR_REPRO_RUNS", "runs"))


def _root(root: str | os.PathLike | None) -> Path:
    return Path(root) if root is not None else default_runs_dir()


def config_hash(config: TrainConfig) -> str:
    """First 16 hex digits of the sha256 of the config's canonical JSON."""
    return spec_hash(config.to_dict())


def run_dir(config: TrainConfig, root: str | os.PathLike | None = None) -> Path:
    """Directory of the run of `config`: <root>/<dataset>-b<batch>-s<seed>-<hash>."""
    name = f"{config.dataset}-b{config.batch_size}-s{config.seed}-{config_hash(config)}"
    return _root(root) / name


def snapshot_name(epoch: int) -> str:
    """The name of the snapshot after `epoch` epochs: "epoch-<epoch, 4 digits>" (the stem of
    its msgpack file and the folder of its measurements)."""
    return f"epoch-{int(epoch):04d}"


def snapshot_file(run_path: str | os.PathLike, epoch: int) -> Path:
    """<run dir>/snapshots/epoch-<k>.msgpack."""
    return Path(run_path) / "snapshots" / f"{snapshot_name(epoch)}.msgpack"


def snapshot_path(config: TrainConfig, epoch: int, root: str | os.PathLike | None = None) -> Path:
    """The file of `config`'s run's variables after `epoch` epochs."""
    return snapshot_file(run_dir(config, root), epoch)


def _read_msgpack(path: Path) -> dict[str, Any]:
    try:
        return flax.serialization.msgpack_restore(path.read_bytes())
    except (ValueError, TypeError, KeyError) as err:
        raise CorruptFileError(f"{path} is corrupt ({err}); delete it") from err


def load_snapshot(
    config: TrainConfig, epoch: int, root: str | os.PathLike | None = None
) -> dict[str, Any]:
    """{"params", "batch_stats"} of `config`'s run after `epoch` epochs (0: the initial point)."""
    path = snapshot_path(config, epoch, root)
    if not path.is_file():
        raise UserError(f"no snapshot {path}; train the run with snapshot_epochs including {epoch}")
    return _read_msgpack(path)


def save_run(
    run: TrainedRun,
    provenance: dict,
    root: str | os.PathLike | None = None,
    *,
    snapshots: Path | None = None,
    trained_with: Sequence[TrainConfig] = (),
) -> Path:
    """Write `run` atomically and return its directory (an existing one is replaced).

    `snapshots`, a folder of epoch-<k>.msgpack files, becomes the run's snapshots/ folder;
    `trained_with` (default: the run alone) is recorded as the group of its compiled program.
    Only the primary process of a multi-process job writes."""
    final = run_dir(run.config, root)
    if not is_primary():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        if snapshots is not None and snapshots.is_dir():
            shutil.copytree(snapshots, tmp / "snapshots")
        write_json(tmp / "config.json", run.config.to_dict())
        variables = {"params": run.params, "batch_stats": run.batch_stats}
        (tmp / "variables.msgpack").write_bytes(flax.serialization.msgpack_serialize(variables))
        write_json(tmp / "history.json", run.history)
        meta = {
            "epochs_run": run.epochs_run,
            "stop_reason": run.stop_reason,
            "diverged": run.diverged,
            "train_seconds": run.train_seconds,
            "trained_with": [c.to_dict() for c in (trained_with or [run.config])],
            "dataset": provenance,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **environment(),
        }
        write_json(tmp / "meta.json", meta)
        os.chmod(tmp, published_mode(directory=True))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_run(path: str | os.PathLike) -> tuple[TrainedRun, dict]:
    """(run, meta) from a run directory; a CorruptFileError naming it if incomplete or corrupt."""
    path = Path(path)
    missing = [f for f in RUN_FILES if not (path / f).is_file()]
    if missing:
        raise CorruptFileError(f"run {path} is incomplete (missing {missing}); delete it")
    try:
        config = TrainConfig.from_dict(read_json(path / "config.json"))
        variables = _read_msgpack(path / "variables.msgpack")
        history = read_json(path / "history.json")
        meta = read_json(path / "meta.json")
        run = TrainedRun(
            config=config,
            params=variables["params"],
            batch_stats=variables["batch_stats"],
            history=history,
            epochs_run=int(meta["epochs_run"]),
            stop_reason=meta["stop_reason"],
            train_seconds=float(meta["train_seconds"]),
            # runs saved before the field existed: their stop_reason began with "diverged"
            diverged=bool(meta.get("diverged", meta["stop_reason"].startswith("diverged"))),
        )
    except (ValueError, TypeError, KeyError) as err:
        raise CorruptFileError(f"run {path} is corrupt ({err}); delete it to retrain") from err
    return run, meta


def saved_runs(root: str | os.PathLike | None = None, dataset: str | None = None) -> list[Path]:
    """Every saved run under `root` (a folder holding all of RUN_FILES; the hidden folders of
    runs being written are skipped), of `dataset` when given (by the folder name's
    "<dataset>-" prefix, as `run_dir` writes it), sorted by name."""
    root = _root(root)
    if not root.is_dir():
        return []
    return sorted(
        path
        for path in root.iterdir()
        if not path.name.startswith(".")
        and (dataset is None or path.name.startswith(f"{dataset}-b"))
        and all((path / f).is_file() for f in RUN_FILES)
    )


def _warm_start_variables(config: TrainConfig, root: Path) -> dict | None:
    source = config.warm_start_source
    if source is None:
        return None
    name, epoch = source
    path = snapshot_file(root / name, epoch)
    if not path.is_file():
        raise UserError(
            f"warm start {config.warm_start!r} needs {path}; train run {name} with a snapshot "
            f"at epoch {epoch} first"
        )
    return _read_msgpack(path)


def _group_tag(configs: Sequence[TrainConfig], root: Path) -> str:
    names = ",".join(sorted(run_dir(c, root).name for c in configs))
    return f"{configs[0].dataset}-b{configs[0].batch_size}-{spec_hash(names)}"


@dataclasses.dataclass
class GroupCheckpoint:
    """The checkpoint file of a group of runs trained together (a `train.Checkpointer`): read
    once to resume, written atomically at most every `seconds` while the group trains."""

    path: Path
    seconds: float
    _last_save: float = dataclasses.field(default_factory=time.monotonic)

    def load(self, template: TrainState) -> LoopState | None:
        if not agree(self.path.is_file()):
            return None
        try:
            return LoopState.from_checkpoint(self.path.read_bytes(), template)
        except (ValueError, TypeError, KeyError) as err:
            raise CorruptFileError(
                f"checkpoint {self.path} is corrupt ({err}); delete it to restart the group"
            ) from err

    def save(self, loop: LoopState, done: bool) -> None:
        if done or time.monotonic() - self._last_save < self.seconds:
            return
        write_atomic(self.path, loop.to_checkpoint())
        self._last_save = time.monotonic()


def get_or_train(
    configs: Sequence[TrainConfig],
    dataset,
    *,
    root: str | os.PathLike | None = None,
    runs_per_program: int | None = None,
    progress: bool = True,
    checkpoint_seconds: float = 60.0,
    snapshot_epochs: Sequence[int] = (),
    on_divergence: str = "raise",
) -> list[TrainedRun]:
    """The run of each config: loaded when saved (with every snapshot asked for), else trained.

    `dataset` is a keskar_repro.data.Dataset whose name must equal each config's dataset. The
    missing runs are grouped by `TrainConfig.shape_key()` (configs that differ only in seed,
    learning rate and warm start); each group trains in programs of `runs_per_program` runs
    (default `train.default_runs_per_program()`; None: the whole group), checkpointed at most
    every `checkpoint_seconds`. Warm starts load their source snapshot from `root`. A saved run
    that lacks a snapshot in `snapshot_epochs` is retrained with its original group (training
    is deterministic) and only the snapshots are added. `on_divergence` is as in `train_runs`.
    """
    root = _root(root)
    wrong = [c.dataset for c in configs if c.dataset != dataset.name]
    if wrong:
        raise ValueError(f"config.dataset={wrong[0]!r} but the dataset given is {dataset.name!r}")
    options = dict(
        dataset=dataset,
        root=root,
        progress=progress,
        checkpoint_seconds=checkpoint_seconds,
        snapshot_epochs=sorted({int(e) for e in snapshot_epochs}),
        on_divergence=on_divergence,
    )
    size = runs_per_program if runs_per_program is not None else default_runs_per_program()
    for program in _programs(_missing(configs, root, options["snapshot_epochs"]), size):
        with _locked(program, root):
            program = _missing(program, root, options["snapshot_epochs"])  # another process?
            if program:
                _train_program(program, **options)
    barrier("keskar_repro.store.runs.get_or_train")  # the primary has saved every run
    return [load_run(run_dir(c, root))[0] for c in configs]


def _missing(configs: Sequence[TrainConfig], root: Path, snapshot_epochs: list[int]):
    """The configs (each once) without a saved run that has every snapshot asked for (the
    primary process's answer on every process)."""
    by_name: dict[str, TrainConfig] = {}
    for config in configs:
        by_name.setdefault(run_dir(config, root).name, config)
    unique = list(by_name.values())

    def missing(config: TrainConfig) -> bool:
        path = run_dir(config, root)
        return not (
            path.is_dir() and all(snapshot_file(path, e).is_file() for e in snapshot_epochs)
        )

    if not unique:
        return []
    flags = agree(np.array([missing(c) for c in unique]))
    return [c for c, flag in zip(unique, flags, strict=True) if flag]


def _programs(configs: list[TrainConfig], size: int | None) -> list[list[TrainConfig]]:
    """`configs` grouped by shape, each group cut into programs of at most `size` runs."""
    groups: dict[TrainConfig, list[TrainConfig]] = {}
    for config in configs:
        groups.setdefault(config.shape_key(), []).append(config)
    return [
        group[i : i + (size or len(group))]
        for group in groups.values()
        for i in range(0, len(group), size or len(group))
    ]


@contextlib.contextmanager
def _locked(configs: Sequence[TrainConfig], root: Path):
    """Hold the lock of every run of `configs` (taken in name order, so two processes never
    deadlock) while they train."""
    with contextlib.ExitStack() as stack:
        for name in sorted(run_dir(c, root).name for c in configs):
            stack.enter_context(file_lock(root / "locks" / f"{name}.lock", f"training {name}"))
        yield


def _saved_group(config: TrainConfig, root: Path) -> list[TrainConfig] | None:
    """The group a saved run was first trained with, or None if it is not saved."""
    path = run_dir(config, root)
    if not path.is_dir():
        return None
    meta_file = path / "meta.json"  # only the metadata: the variables are not needed here
    meta = read_json(meta_file) if meta_file.is_file() else load_run(path)[1]  # incomplete: named
    group = [TrainConfig.from_dict(d) for d in meta.get("trained_with", [])]
    return group or [config]


def _train_program(
    configs: list[TrainConfig],
    *,
    dataset,
    root: Path,
    progress: bool,
    checkpoint_seconds: float,
    snapshot_epochs: list[int],
    on_divergence: str,
) -> None:
    """Train `configs` in one program (or, for saved runs retrained for their snapshots, the
    groups they were first trained with), checkpointed, then save each run with its snapshots."""
    saved = agree(np.array([run_dir(c, root).is_dir() for c in configs]))
    saved_groups = {tuple(_saved_group(c, root)) for c, s in zip(configs, saved, strict=True) if s}
    fresh = [c for c, s in zip(configs, saved, strict=True) if not s]
    programs = [list(g) for g in saved_groups] + ([fresh] if fresh else [])
    for program in programs:
        tag = _group_tag(program, root)
        checkpoint = GroupCheckpoint(root / "checkpoints" / f"{tag}.msgpack", checkpoint_seconds)
        staging = checkpoint.path.with_suffix(".snapshots")

        def save_snapshots(epoch: int, variables: list[dict], program=program, staging=staging):
            for config, v in zip(program, variables, strict=True):
                target = staging / run_dir(config, root).name / f"{snapshot_name(epoch)}.msgpack"
                write_atomic(target, flax.serialization.msgpack_serialize(v))

        trained = train_runs(
            program,
            dataset.x_train,
            dataset.y_train,
            dataset.x_test,
            dataset.y_test,
            initial_variables=[_warm_start_variables(c, root) for c in program],
            snapshot_epochs=snapshot_epochs,
            on_snapshot=save_snapshots,
            progress=progress,
            checkpoint=checkpoint,
            on_divergence=on_divergence,
        )
        if not is_primary():
            continue
        for run in trained:
            path = run_dir(run.config, root)
            if path.is_dir():  # a saved run retrained for its snapshots: only they are added
                _add_snapshots(path, staging / path.name, run)
            else:
                save_run(run, dataset.provenance, root, snapshots=staging / path.name,
                         trained_with=program)  # fmt: skip
        checkpoint.path.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)


def _add_snapshots(path: Path, snapshots: Path, retrained: TrainedRun) -> None:
    """Move the snapshots of a retraining into the saved run at `path`. The retraining ran in
    the run's original group, so it ends exactly at the saved variables; if it does not (a run
    saved by an older version in another group, or a non-deterministic device), the snapshots
    are not added and a notice says so."""
    if not _same_variables(load_run(path)[0], retrained):
        print(
            f"notice: retraining {path.name} did not reproduce its saved variables (it was "
            "trained in another group of runs or on another device); its snapshots are not "
            "saved. Delete the run to train it afresh with snapshots.",
            file=sys.stderr,
        )
        return
    target = path / "snapshots"
    target.mkdir(exist_ok=True)
    for f in sorted(snapshots.iterdir()):
        os.replace(f, target / f.name)


def _same_variables(a: TrainedRun, b: TrainedRun) -> bool:
    leaves_a = jax.tree_util.tree_leaves((a.params, a.batch_stats))
    leaves_b = jax.tree_util.tree_leaves((b.params, b.batch_stats))
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(leaves_a, leaves_b, strict=True)
    )
