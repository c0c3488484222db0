"""Options and helpers shared by several figure scripts: the SB/LB batch options and the paper's
protocol configurations, epsilons, the BN policy, a baseline results JSON, the runs of a
configuration from the run store, progress bars."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from keskar_repro.errors import UserError
from keskar_repro.report.settings import Settings, float_list
from keskar_repro.training.bn_policies import BN_POLICIES, DEFAULT_BN_POLICY


def add_batch_options(p: argparse.ArgumentParser) -> None:
    """--seeds, --epochs, --sb-batch, --lb-batch (SB/LB default: the paper's sizes)."""
    p.add_argument("--seeds", type=int, help="number of seeds (0, 1, ..., n-1)")
    p.add_argument("--epochs", type=int, help="training epochs of every run")
    p.add_argument(
        "--sb-batch", type=int, help="SB batch; default 256 scaled so LB/SB is the paper's 23.4"
    )
    p.add_argument("--lb-batch", type=int, help="LB batch; default 10%% of the training set")


def batch_checks(settings: Settings) -> dict[str, bool]:
    return {
        "--seeds": settings.seeds >= 1,
        "--epochs": settings.epochs >= 1,
        "--sb-batch": settings.sb_batch is None or settings.sb_batch >= 1,
        "--lb-batch": settings.lb_batch is None or settings.lb_batch >= 1,
    }


def add_epsilons_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epsilons", type=float_list, help="comma-separated box sizes, e.g. 1e-3,5e-4")


def epsilons_check(settings: Settings) -> dict[str, bool]:
    return {"--epsilons": bool(settings.epsilons) and min(settings.epsilons) > 0}


def add_bn_policy_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bn-policy",
        choices=BN_POLICIES,
        default=DEFAULT_BN_POLICY,
        help="batch-norm statistics for sharpness, accuracy and paths (default: batch "
        "statistics of chunks of 5000, as the authors' Keras code; "
        "keskar_repro.training.bn_policies)",
    )


def sb_lb_configs(settings: Settings, dataset, resolved: dict) -> dict[str, Any]:
    """{"SB": TrainConfig, "LB": TrainConfig} of the paper's protocol (training.protocol)
    for `dataset`, printing the batch-size choice and recording sb_batch, lb_batch and
    batch_note in `resolved`; the same configurations in every script, so runs are shared."""
    from keskar_repro.training.protocol import sb_lb_configs as protocol_configs

    configs, note = protocol_configs(
        dataset.name,
        dataset.n_train,
        epochs=settings.epochs,
        hidden=settings.hidden,
        sb_batch=settings.sb_batch,
        lb_batch=settings.lb_batch,
        init=settings.init,
    )
    print(
        f"{dataset.name}: {dataset.n_train} train / {dataset.n_test} test; preset "
        f"{settings.preset}; {settings.seeds} seeds x {settings.epochs} epochs; {note}",
        file=sys.stderr,
    )
    resolved.update(
        sb_batch=configs["SB"].batch_size, lb_batch=configs["LB"].batch_size, batch_note=note
    )
    return configs


def add_baseline_option(p: argparse.ArgumentParser, reads: str) -> None:
    """--baseline: a fig_sharpness.py results JSON to read the SB and LB runs' `reads` from."""
    p.add_argument(
        "--baseline",
        default=None,
        help="a results JSON of experiments/fig_sharpness.py whose SB and LB runs are this "
        f"script's (checked: the same training configuration per seed): their {reads} are "
        "read from it instead of trained again, e.g. figures/fig_sharpness_mnist_paper.json",
    )


def baseline_runs(path: str, configs: dict[str, Any], seeds: int) -> tuple[dict, dict]:
    """(results, {regime: [run entry]}) of a fig_sharpness.py results JSON at `path`: for SB
    and LB and seeds 0 .. seeds - 1, the entry of `results["runs"]` trained with exactly
    `configs[regime]` at that seed and evaluated under BN policy "batch"; a UserError naming
    the first one missing or different (the JSON's runs were lost, so nothing can be
    retrained to match: drop --baseline to train here)."""
    from keskar_repro.store.files import read_json
    from keskar_repro.training.protocol import with_seeds

    if not Path(path).is_file():
        raise UserError(f"--baseline {path} does not exist; run experiments/fig_sharpness.py")
    results, found = read_json(path), {}
    for regime in ("SB", "LB"):
        found[regime] = []
        for config in with_seeds(configs[regime], range(seeds)):
            match = [
                r
                for r in results.get("runs", [])
                if (r["regime"], r["seed"]) == (regime, config.seed)
                and r["config"] == config.to_dict()
                and r["bn_policy"] == "batch"
            ]
            if not match:
                raise UserError(
                    f"--baseline {path}: {regime} seed {config.seed} is missing or not this "
                    f"script's run (training configuration {config.to_dict()}, BN policy "
                    "batch); drop --baseline to train it here"
                )
            found[regime].append(match[0])
    return results, found


def get_runs(settings: Settings, dataset, configs, **kwargs) -> list:
    """`runs.get_or_train(configs, ...)` with the script's --runs-dir, --runs-per-program and
    --no-progress."""
    from keskar_repro.store.runs import get_or_train

    return get_or_train(
        list(configs),
        dataset,
        root=settings.runs_dir,
        runs_per_program=settings.runs_per_program,
        progress=not settings.no_progress,
        **kwargs,
    )


def seed_runs(settings: Settings, dataset, config, seeds=None, **kwargs) -> list:
    """The runs of `config` for `seeds` (default 0 .. settings.seeds - 1) (`get_runs`)."""
    from keskar_repro.training.protocol import with_seeds

    seeds = range(settings.seeds) if seeds is None else seeds
    return get_runs(settings, dataset, with_seeds(config, seeds), **kwargs)


def progress_bar(settings: Settings, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=settings.no_progress)
