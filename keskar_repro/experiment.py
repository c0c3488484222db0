"""The command-line plumbing shared by the experiments/fig_*.py scripts (no JAX at import).

Every script has the same skeleton: common options (--dataset, --data-dir, --preset, --out,
--runs-dir, --replot, --no-progress, --hidden) whose defaults come from a preset, a results JSON
`<out>/<stem>_<dataset>_<preset>.json` holding every number, the command, the configuration,
dataset provenance, versions, device and wall time, and figures drawn from that JSON alone, so
`--replot` redraws them without JAX.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "figures"
DATASETS = ("mnist", "mnist10k", "fashion_mnist")


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def float_list(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def parser(doc: str, presets: dict[str, dict[str, Any]]) -> argparse.ArgumentParser:
    """An ArgumentParser with the common options; the script adds its own, with default None
    where a preset supplies the value."""
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Defaults come from --preset; any option given overrides it. Presets: "
        + "; ".join(f"{name}: {_describe(values)}" for name, values in presets.items()),
    )
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default=None,
        help="default: full MNIST when present locally or downloadable, else mnist10k",
    )
    p.add_argument("--data-dir", default=None, help="folder with the four IDX files")
    p.add_argument("--preset", choices=sorted(presets), default="paper")
    p.add_argument(
        "--hidden",
        type=lambda s: tuple(int_list(s)),
        default=(512,) * 5,
        help="hidden widths, comma-separated (default F1: 512,512,512,512,512)",
    )
    p.add_argument("--out", default=str(DEFAULT_OUT), help="results and figures folder")
    p.add_argument(
        "--runs-dir", default=None, help="saved runs (default $KESKAR_REPRO_RUNS or ./runs)"
    )
    p.add_argument(
        "--runs-per-program",
        type=int,
        default=None,
        help="runs of one shape (seeds, learning rates, warm starts) trained in one vmapped "
        "program; default: all of them on a GPU/TPU, 1 on a CPU, where vmapping small batches "
        "was measured slower than training the runs one after another",
    )
    p.add_argument("--replot", action="store_true", help="redraw figures from the JSON only")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def parse(
    p: argparse.ArgumentParser,
    presets: dict[str, dict[str, Any]],
    argv: list[str] | None,
    checks: Callable[[argparse.Namespace], dict[str, bool]],
) -> argparse.Namespace:
    """Parse, fill unset options from the preset, and reject impossible settings with one line
    naming the option (`checks(args)` maps "--flag" to whether its value is possible)."""
    args = p.parse_args(argv)
    for name, value in presets[args.preset].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    problems = {
        "--hidden": len(args.hidden) >= 1 and min(args.hidden) >= 1,
        "--runs-per-program": args.runs_per_program is None or args.runs_per_program >= 1,
        **checks(args),
    }
    for flag, ok in problems.items():
        if not ok:
            p.error(f"{flag}={getattr(args, flag[2:].replace('-', '_'))} is impossible")
    return args


def load_dataset(args: argparse.Namespace):
    """The requested dataset, or the default: full MNIST if obtainable, else mnist10k (with a
    notice); sets args.dataset to the name used."""
    from keskar_repro import data

    if args.dataset is not None:
        return data.load(args.dataset, data_dir=args.data_dir)
    try:
        dataset = data.load("mnist", data_dir=args.data_dir)
    except data.DataUnavailableError as err:
        print(
            f"notice: full MNIST is not available ({str(err).splitlines()[0]}); "
            "using the shipped mnist10k (8,000 train / 2,000 test).",
            file=sys.stderr,
        )
        dataset = data.load("mnist10k")
    args.dataset = dataset.name
    return dataset


def runs_per_program(args: argparse.Namespace) -> int | None:
    """--runs-per-program, else None (all together) on accelerators and 1 on a CPU: there, at
    batch 32, 5 vmapped F1 runs took 1.28x as long as 5 runs one after another (2-core Xeon)."""
    if args.runs_per_program is not None:
        return args.runs_per_program
    import jax

    return 1 if jax.default_backend() == "cpu" else None


def results_path(args: argparse.Namespace, stem: str) -> Path:
    return Path(args.out) / f"{stem}_{args.dataset}_{args.preset}.json"


def figure_stem(args: argparse.Namespace, name: str) -> str:
    """<out>/<name>_<dataset>_<preset> (save_figure adds .png and .pdf)."""
    return str(Path(args.out) / f"{name}_{args.dataset}_{args.preset}")


def start_results(args: argparse.Namespace, script: str, argv: list[str] | None, dataset) -> dict:
    """The header of a results JSON: command, configuration and dataset provenance."""
    hidden = {"replot", "no_progress"}
    return {
        "command": f"python experiments/{script} "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "config": {k: v for k, v in vars(args).items() if k not in hidden},
        "dataset": dataset.provenance,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def finish(
    results: dict,
    args: argparse.Namespace,
    stem: str,
    t0: float,
    draw: Callable[[dict, argparse.Namespace], list[str]],
    text: Callable[[dict], str] | None = None,
) -> int:
    """Add environment and wall time, write the JSON atomically, print the summary, draw."""
    from keskar_repro.runs import environment, write_atomic

    results["environment"] = environment()
    results["wall_seconds"] = time.time() - t0
    path = results_path(args, stem)
    write_atomic(path, json.dumps(results, indent=1))
    if text is not None:
        print(text(results))
    print(f"wrote {path}")
    for f in draw(results, args):
        print(f"wrote {f}")
    print(f"wall time {results['wall_seconds']:.0f} s")
    return 0


def replot(
    args: argparse.Namespace,
    stem: str,
    draw: Callable[[dict, argparse.Namespace], list[str]],
    text: Callable[[dict], str] | None = None,
) -> int:
    """Redraw the figures (and reprint the summary) from the results JSON alone."""
    if args.dataset is None:
        raise ValueError("--replot needs --dataset (and the --preset) of the results to draw")
    path = results_path(args, stem)
    if not path.is_file():
        raise FileNotFoundError(f"no results at {path}; run without --replot first")
    results = json.loads(path.read_text())
    if text is not None:
        print(text(results))
    for f in draw(results, args):
        print(f"wrote {f}")
    return 0


def run(
    argv: list[str] | None,
    args: argparse.Namespace,
    script: str,
    stem: str,
    compute: Callable[[argparse.Namespace, Any], dict],
    draw: Callable[[dict, argparse.Namespace], list[str]],
    text: Callable[[dict], str],
    resolved: tuple[str, ...] = (),
) -> int:
    """The body of every figure script's main: --replot, or load the data, compute, write the
    JSON (with the options in `resolved`, which compute fills in, added to its config), draw."""
    if args.replot:
        return replot(args, stem, draw, text)
    t0 = time.time()
    dataset = load_dataset(args)
    results = start_results(args, Path(script).name, argv, dataset)
    results.update(compute(args, dataset))
    results["config"].update({name: getattr(args, name) for name in resolved})
    return finish(results, args, stem, t0, draw, text)


def cli(main: Callable[[], int]) -> None:
    """Run `main`, turning the errors a user can fix into one line on stderr and exit code 1."""
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError, FloatingPointError, RuntimeError) as err:
        sys.exit(f"error: {err}")


def add_batch_args(p: argparse.ArgumentParser) -> None:
    """--seeds, --epochs, --sb-batch, --lb-batch (SB/LB default: the paper's sizes)."""
    p.add_argument("--seeds", type=int, help="number of seeds (0, 1, ..., n-1)")
    p.add_argument("--epochs", type=int, help="training epochs of every run")
    p.add_argument(
        "--sb-batch", type=int, help="SB batch; default 256 scaled so LB/SB is the paper's 23.4"
    )
    p.add_argument("--lb-batch", type=int, help="LB batch; default 10%% of the training set")


def batch_checks(args: argparse.Namespace) -> dict[str, bool]:
    return {
        "--seeds": args.seeds >= 1,
        "--epochs": args.epochs >= 1,
        "--sb-batch": args.sb_batch is None or args.sb_batch >= 1,
        "--lb-batch": args.lb_batch is None or args.lb_batch >= 1,
    }


def sb_lb_configs(args: argparse.Namespace, dataset) -> dict[str, Any]:
    """{"SB": TrainConfig, "LB": TrainConfig} of the paper's protocol for `dataset` (printing
    the batch-size choice), as experiments/fig_sharpness.py trains them, so runs are shared."""
    from keskar_repro.train import TrainConfig, paper_batch_sizes

    sb, lb, note = paper_batch_sizes(dataset.n_train, args.sb_batch, args.lb_batch)
    print(
        f"{dataset.name}: {dataset.n_train} train / {dataset.n_test} test; preset "
        f"{args.preset}; {args.seeds} seeds x {args.epochs} epochs; {note}",
        file=sys.stderr,
    )
    args.sb_batch, args.lb_batch = sb, lb
    return {
        regime: TrainConfig(
            dataset=dataset.name, batch_size=batch, epochs=args.epochs, hidden=args.hidden
        )
        for regime, batch in (("SB", sb), ("LB", lb))
    }


def mean_std_curves(histories: list[dict], keys: tuple[str, ...]) -> dict[str, list[float]]:
    """Per-epoch mean and std (ddof 1; 0 for one run) over runs of each history key, over the
    epochs all runs reached: {"epoch", "<key>_mean", "<key>_std"}."""
    import numpy as np

    n = min(len(h[keys[0]]) for h in histories)
    out: dict[str, list[float]] = {"epoch": list(range(1, n + 1))}
    for key in keys:
        values = np.asarray([h[key][:n] for h in histories], float)
        out[f"{key}_mean"] = values.mean(0).tolist()
        out[f"{key}_std"] = (values.std(0, ddof=1) if len(values) > 1 else 0 * values[0]).tolist()
    return out


SNAPSHOT_GRID = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def snapshot_schedule(epochs: int) -> list[int]:
    """Epochs at which training snapshots are kept: 0, 1, 2, 5, 10, 20, 50, ... up to `epochs`,
    and `epochs` itself (0 is the initial point)."""
    return sorted({e for e in SNAPSHOT_GRID if e <= epochs} | {epochs})


def regime_stats(records: list[dict], key: str, scale: float = 1.0) -> dict[str, float]:
    """{"mean", "std", "n"} of `key` (optionally scaled, e.g. 100 for %) over `records`;
    `key` may be "sharpness/<eps>"."""
    from keskar_repro.paper import mean_std

    values = [
        scale * (r["sharpness"][key.split("/", 1)[1]] if key.startswith("sharpness/") else r[key])
        for r in records
    ]
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "n": len(values)}
