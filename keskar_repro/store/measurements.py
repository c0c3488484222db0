"""Measurements of saved runs (accuracy, sharpness, paths), each computed once and kept beside
its run (`files.cached_json` in <run dir>/measurements/), so experiments share them and resume
after interruption.

Every measurement is a JSON-ready dict; its spec (what was measured, how) names its file. Each
spec carries `MEASUREMENT_VERSION`, raised whenever the code changes what a measurement returns
for the same spec, so that results cached by an older version are computed again instead of
being reused.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keskar_repro.measures.checks import with_data
from keskar_repro.measures.options import MeasureSettings, SolverOptions
from keskar_repro.measures.registry import get_notion
from keskar_repro.measures.sharpness import resolved_method, sharpness
from keskar_repro.store.files import cached_json
from keskar_repro.store.runs import load_snapshot, run_dir, snapshot_name
from keskar_repro.training.interpolation import evaluate_path
from keskar_repro.training.objective import data_loss_fn, objective_data, split_metrics
from keskar_repro.training.protocol import (
    DEFAULT_SUBSPACE_SCALING,
    SHARPNESS_MAXITER,
    SUBSPACE_KEY,
    subspace_key,
)
from keskar_repro.training.train import TrainedRun

# 2: cross-entropy in its log1p form (objective.cross_entropy), precise at the tiny
# losses of converged minimizers, and L-BFGS-B restarted until all its iterations are done.
# Caches written before (no version) are not reused.
MEASUREMENT_VERSION = 2


def cached_measurement(
    run: TrainedRun, kind: str, spec: dict, compute, root: str | os.PathLike | None = None
):
    """`compute()`'s result for `run`, cached in <measurement_dir(run)>/measurements/ under
    `spec` plus the MEASUREMENT_VERSION."""
    spec = {**spec, "version": MEASUREMENT_VERSION}
    return cached_json(measurement_dir(run, root) / "measurements", kind, spec, compute)


def splits_of(dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"train": (dataset.x_train, dataset.y_train), "test": (dataset.x_test, dataset.y_test)}


def snapshot_of(run: TrainedRun, epoch: int, root: str | os.PathLike | None = None) -> TrainedRun:
    """The run's saved snapshot after `epoch` epochs (`snapshot` set, the history cut there);
    the run itself for its own last epoch. Measurements of a snapshot are cached in its own
    folder (`measurement_dir`)."""
    if epoch == run.epochs_run:
        return run
    variables = load_snapshot(run.config, epoch, root)
    history = {k: v[:epoch] for k, v in run.history.items()}
    return run._replace(
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        history=history,
        epochs_run=epoch,
        stop_reason=f"snapshot after epoch {epoch}",
        snapshot=True,
    )


def measurement_dir(run: TrainedRun, root: str | os.PathLike | None = None) -> Path:
    """Where the measurements of `run` are cached: its run directory, or for a snapshot
    (`snapshot_of`) <run dir>/snapshots/epoch-<k>/."""
    path = run_dir(run.config, root)
    return path / "snapshots" / snapshot_name(run.epochs_run) if run.snapshot else path


def final_metrics(
    run: TrainedRun, dataset, bn_policy: str, root: str | os.PathLike | None = None
) -> dict[str, float]:
    """{train,test}_{loss,accuracy} of the run's final parameters under `bn_policy`."""

    def compute():
        out = {}
        for name, (x, y) in splits_of(dataset).items():
            loss, acc = split_metrics(
                run.config.model(), run.params, run.batch_stats, x, y, bn_policy=bn_policy
            )
            out[f"{name}_loss"], out[f"{name}_accuracy"] = float(loss), float(acc)
        return out

    return cached_measurement(run, "metrics", {"bn_policy": bn_policy}, compute, root)


class RunSharpness:
    """Sharpness measurements of one run, sharing one compiled training objective per policy."""

    def __init__(self, run: TrainedRun, dataset, root: str | os.PathLike | None = None):
        self.run, self.dataset, self.root = run, dataset, root
        self._loss_fns: dict[str, object] = {}

    def loss_fn(self, bn_policy: str):
        if bn_policy not in self._loss_fns:
            self._loss_fns[bn_policy] = training_objective(self.run, self.dataset, bn_policy)
        return self._loss_fns[bn_policy]

    def measure(
        self,
        epsilon: float,
        *,
        subspace_dim: int | None = None,
        subspace_scaling: str | None = None,
        bn_policy: str = "batch",
        scaling: str = "normalized",
        method: str = "auto",
    ) -> dict:
        """`sharpness(...).to_dict()` of the run's training objective, cached beside the run.

        The subspace of seed s is drawn from fold_in(key(SUBSPACE_KEY), s): the SB and LB runs
        of a seed are measured in the same subspace; its columns are Gaussian unless
        `subspace_scaling` says otherwise (the convention the tables report).
        """
        if subspace_dim:
            subspace_scaling = subspace_scaling or DEFAULT_SUBSPACE_SCALING
        space = "full" if not subspace_dim else f"subspace-{subspace_scaling}"
        method = resolved_method(method, scaling)  # the solver that runs is part of the spec
        spec = {
            "epsilon": epsilon,
            "space": space,
            "subspace_dim": subspace_dim or None,
            "maxiter": SHARPNESS_MAXITER,
            "bn_policy": bn_policy,
            "scaling": scaling,
            "subspace_key": SUBSPACE_KEY if subspace_dim else None,
            "method": method,
            "subspace_scaling": subspace_scaling if subspace_dim else None,
        }

        def compute():
            key = subspace_key(self.run.config.seed) if subspace_dim else None
            result = sharpness(
                self.loss_fn(bn_policy),
                self.run.params,
                epsilon,
                subspace_dim=subspace_dim or None,
                key=key,
                maxiter=SHARPNESS_MAXITER,
                method=method,
                scaling=scaling,
                subspace_scaling=subspace_scaling or DEFAULT_SUBSPACE_SCALING,
            )
            return result.to_dict()

        result = cached_measurement(self.run, "sharpness", spec, compute, self.root)
        return {"space": space, "bn_policy": bn_policy, **result}


NOTION_KEY = 20170102  # our choice: the Gaussian draws of seed s come from fold_in(key(this), s)


def training_objective(run: TrainedRun, dataset, bn_policy: str = "batch"):
    """The run's training objective as a measurable `loss_fn(params)`: the one compiled
    `objective.data_loss_fn` of the run's model and policy, with the run's batch statistics and
    the training split as its data argument (`keskar_repro.measures.checks.WithData`), so every
    run of a shape shares one compilation."""
    data = objective_data(run.batch_stats, dataset.x_train, dataset.y_train)
    return with_data(data_loss_fn(run.config.model(), bn_policy=bn_policy), data)


def notion_measurement(
    run: TrainedRun,
    dataset,
    notion: str,
    epsilon: float,
    *,
    samples: int | None = None,
    params=None,
    transform: dict | None = None,
    loss_fn=None,
    root: str | os.PathLike | None = None,
) -> dict:
    """{"value", "stderr" (Monte Carlo; 0 for the worst case), "report": the notion's
    `to_dict()`} of the registered notion `notion` (keskar_repro.measures.NOTIONS) on the
    run's training objective (BN policy "batch"), cached beside the run.

    `params` (default: the run's) may be a transformed copy; `transform`, a JSON-ready dict
    that determines it (e.g. {"kind": "match_norms", "target": {...}}), is then part of the
    cache's spec. `loss_fn` (default: `training_objective(run, dataset)`) is the objective
    measured. The Gaussian draws of seed s come from fold_in(key(NOTION_KEY), s): the same for
    every run of a seed and every transform.

    A notion that does not depend on epsilon (the Hessian's, `Notion.epsilon`) is cached once
    per point whatever `epsilon` is; its Lanczos asks for the largest eigenvalue alone
    (`top_k` 1, at MeasureSettings' tolerance), the notion's value.
    """
    entry = get_notion(notion)
    if (params is None) != (transform is None):
        raise ValueError("give params and the transform that made them together, or neither")
    hessian = {} if entry.epsilon else {"top_k": 1}
    spec = {
        "notion": notion,
        "epsilon": epsilon if entry.epsilon else None,
        **hessian,
        "samples": samples if notion.startswith("average") else None,
        "maxiter": SHARPNESS_MAXITER,
        "bn_policy": "batch",
        "transform": transform or {"kind": "none"},
    }

    def compute():
        import jax

        f = loss_fn or training_objective(run, dataset)
        key = jax.random.fold_in(jax.random.key(NOTION_KEY), run.config.seed)
        solver = SolverOptions(maxiter=SHARPNESS_MAXITER)
        draws = {} if samples is None else {"samples": samples}  # the average-case notions'
        settings = MeasureSettings(epsilon, solver, **draws, **hessian)
        x = run.params if params is None else params
        value, stderr, report = entry.compute(f, x, settings, key, None)
        return {"value": value, "stderr": stderr, "report": report.to_dict()}

    return cached_measurement(run, "notion", spec, compute, root)


def pair_path(
    sb_run: TrainedRun,
    lb_run: TrainedRun,
    dataset,
    alphas,
    kind: str,
    bn_policy: str,
    root: str | os.PathLike | None = None,
) -> dict:
    """Loss and accuracy along the `kind` path from the SB (alpha 0) to the LB (alpha 1) run,
    cached beside the SB run."""
    alphas = np.asarray(alphas, np.float64)
    spec = {
        "kind": kind,
        "alphas": alphas.tolist(),
        "bn_policy": bn_policy,
        "lb_run": run_dir(lb_run.config, root).name,
    }

    def compute():
        endpoints = [{"params": r.params, "batch_stats": r.batch_stats} for r in (sb_run, lb_run)]
        out = evaluate_path(
            sb_run.config.model(),
            *endpoints,
            alphas,
            splits_of(dataset),
            kind=kind,
            bn_policy=bn_policy,
        )
        return {k: v.tolist() for k, v in out.items()}

    result = cached_measurement(sb_run, "path", spec, compute, root)
    return {"kind": kind, "bn_policy": bn_policy, "pair_seed": sb_run.config.seed, **result}


def run_record(
    run: TrainedRun,
    dataset,
    epsilons,
    *,
    bn_policy: str = "batch",
    root: str | os.PathLike | None = None,
) -> dict:
    """Accuracy, cross-entropy and full-space sharpness (each epsilon) of a run or snapshot:
    {"seed", "batch_size", "learning_rate", "epoch", "stop_reason", "{train,test}_{loss,
    accuracy}", "sharpness": {str(eps): Metric 2.1 value}, "sharpness_reports": {str(eps):
    the solver's report}}; every measurement cached beside the run."""
    meter = RunSharpness(run, dataset, root)
    reports = {str(eps): meter.measure(eps, bn_policy=bn_policy) for eps in epsilons}
    return {
        "seed": run.config.seed,
        "batch_size": run.config.batch_size,
        "learning_rate": run.config.learning_rate,
        "epoch": run.epochs_run,
        "stop_reason": run.stop_reason,
        **final_metrics(run, dataset, bn_policy, root),
        "sharpness": {eps: r["value"] for eps, r in reports.items()},
        "sharpness_reports": reports,
    }
