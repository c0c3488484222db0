"""Regenerate every figure of the package, in dependency order, with one command.

    python experiments/make_all.py --dataset mnist10k            # paper presets (hours on a CPU)
    python experiments/make_all.py --dataset mnist10k --quick    # every figure in minutes
    python experiments/make_all.py --dataset mnist10k --only fig_warm_start,fig_lr_batch

Runs, in one process (so compiled programs and loaded data are shared), every script of
experiments/ that declares a figure (`SPEC`, keskar_repro.report.experiment), in the order of their
specs: fig_sharpness (Tables 2-4, Figures 3 and 7), then the scripts that reuse its runs
(fig_accuracy_curves: Figure 2; sharpness_report; table_conservative: Table 7),
fig_sharpness_training (Figure 6, which
keeps the SB snapshots), fig_warm_start (Figure 5, warm-started from those snapshots),
fig_batch_sweep (Figure 4), fig_lr_batch (the learning-rate x batch-size study), and last
fig_sharpness_notions (other sharpness notions and rescalings; its paper preset measures every
run the scripts before it trained, for the rank correlations). Every script
reuses the saved runs and measurements of the others, so an interrupted make_all resumes where
it stopped. The options below, except --quick and --only, are passed to every script (--seeds
and --epochs override every preset: for smoke tests).

Runtime on the 2-core CPU: about 25 minutes for --quick on mnist10k from a fresh runs dir.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keskar_repro.errors import UserError  # noqa: E402
from keskar_repro.report import experiment  # noqa: E402

PASSED = (
    "dataset",
    "data_dir",
    "hidden",
    "init",
    "out",
    "runs_dir",
    "runs_per_program",
    "seeds",
    "epochs",
)


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str], list[experiment.FigureSpec]]:
    specs = experiment.specs()
    names = [s.name for s in specs]
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument("--quick", action="store_true", help="the quick preset of every script")
    p.add_argument(
        "--only",
        type=lambda s: s.split(","),
        default=names,
        help="comma-separated subset of: " + ", ".join(names),
    )
    for name in PASSED:
        p.add_argument(f"--{name.replace('_', '-')}", help="passed to every script")
    p.add_argument("--no-progress", action="store_true", help="passed to every script")
    args = p.parse_args(argv)
    unknown = [s for s in args.only if s not in names]
    if unknown:
        p.error(f"--only: unknown script(s) {unknown}; choose from {', '.join(names)}")
    passthrough = []
    for name in PASSED:
        if getattr(args, name) is not None:
            passthrough += [f"--{name.replace('_', '-')}", getattr(args, name)]
    if args.no_progress:
        passthrough.append("--no-progress")
    return args, passthrough, [s for s in specs if s.name in args.only]


def main(argv=None) -> int:
    args, passthrough, chosen = parse_args(argv)
    preset = ["--preset", "quick" if args.quick else "paper"]
    timings = {}
    for spec in chosen:
        print(f"=== {spec.name} {' '.join(preset + passthrough)}", flush=True)
        t0 = time.time()
        status = experiment.main(spec, preset + passthrough)
        timings[spec.name] = time.time() - t0
        if status:
            return status
    print("=== done: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
