"""Regenerate every figure of the package, in dependency order, with one command.

    python experiments/make_all.py --dataset mnist10k            # paper presets (hours on a CPU)
    python experiments/make_all.py --dataset mnist10k --quick    # every figure in minutes
    python experiments/make_all.py --dataset mnist10k --only fig_warm_start,fig_lr_batch

Runs, in one process (so compiled programs and loaded data are shared): fig_sharpness (Tables
2-4, Figures 3 and 7), fig_accuracy_curves (Figure 2, on the same runs), fig_sharpness_training
(Figure 6, which keeps the SB snapshots), fig_warm_start (Figure 5, warm-started from those
snapshots), fig_batch_sweep (Figure 4) and fig_lr_batch (the learning-rate x batch-size study).
Every script reuses the saved runs and measurements of the others, so an interrupted make_all
resumes where it stopped. The options below, except --quick and --only, are passed to every
script (--seeds and --epochs override every preset: for smoke tests).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parent
sys.path.insert(0, str(EXPERIMENTS))
sys.path.insert(0, str(EXPERIMENTS.parent))

from keskar_repro import experiment  # noqa: E402

SCRIPTS = (
    "fig_sharpness",
    "fig_accuracy_curves",
    "fig_sharpness_training",
    "fig_warm_start",
    "fig_batch_sweep",
    "fig_lr_batch",
)


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument("--quick", action="store_true", help="the quick preset of every script")
    p.add_argument(
        "--only",
        type=lambda s: s.split(","),
        default=list(SCRIPTS),
        help="comma-separated subset of: " + ", ".join(SCRIPTS),
    )
    for flag in (
        "--dataset",
        "--data-dir",
        "--hidden",
        "--out",
        "--runs-dir",
        "--seeds",
        "--epochs",
    ):
        p.add_argument(flag, help="passed to every script")
    p.add_argument("--no-progress", action="store_true", help="passed to every script")
    args = p.parse_args(argv)
    unknown = [s for s in args.only if s not in SCRIPTS]
    if unknown:
        p.error(f"--only: unknown script(s) {unknown}; choose from {', '.join(SCRIPTS)}")
    passthrough = []
    for name in ("dataset", "data_dir", "hidden", "out", "runs_dir", "seeds", "epochs"):
        if getattr(args, name) is not None:
            passthrough += [f"--{name.replace('_', '-')}", getattr(args, name)]
    if args.no_progress:
        passthrough.append("--no-progress")
    return args, passthrough


def main(argv=None) -> int:
    args, passthrough = parse_args(argv)
    preset = ["--preset", "quick" if args.quick else "paper"]
    timings = {}
    for name in (s for s in SCRIPTS if s in args.only):
        print(f"=== {name} {' '.join(preset + passthrough)}", flush=True)
        t0 = time.time()
        status = importlib.import_module(name).main(preset + passthrough)
        timings[name] = time.time() - t0
        if status:
            return status
    print("=== done: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    experiment.cli(main)
