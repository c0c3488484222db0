"""The figure scripts' runner: each script declares one `FigureSpec`, and this runs it.

A spec says everything about its figure once: the presets, the script's own options and their
checks, `compute` (train or load runs, measure), `summarize` (the numbers its text and figures
report), `text` (what the terminal shows), and `draw` (the figures, from the results JSON
alone). The runner gives every script the same command line (--dataset, --data-dir, --preset,
--out, --runs-dir, --runs-per-program, --replot, --no-progress, --hidden), writes one results
JSON `<out>/<stem>_<dataset>_<preset>.json` holding every number, the command, the
configuration, dataset provenance, versions, device and wall time, and lets `--replot` redraw
the figures from that JSON without importing JAX. `specs()` finds every script's spec (for
make_all and the tests), so adding a figure is adding one file to experiments/.

Parts: a figure too long for one sitting declares `Parts` (keskar_repro.report.parts), and
`--merge A.json B.json ...` merges the parts' results JSON into the figure's.

Settings: the command line and the preset are read once into a frozen `Settings` (the common
options as typed fields, the script's own in `options`, read as attributes), which is passed
down; nothing changes it. What a script determines while it runs (the SB/LB batch sizes chosen
for the dataset, the batch sizes of a sweep) it records in the `resolved` dict its `compute`
receives; the runner adds that dict to the results JSON's config. Every results JSON carries the
same provenance: the command, config (with bn_policy and batch_note), dataset, environment
(hardware and versions), started and wall_seconds (`PROVENANCE_KEYS`).

Errors: a `UserError` (bad input, a missing or corrupt file, a diverged run) is printed as one
line on stderr with exit status 2, as argparse does for impossible options; any other exception
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keskar_repro.errors import UserError
from keskar_repro.report.parts import BATCH_SIZE_PARTS, Parts, check_parts, merge_parts, unit_order
from keskar_repro.report.script_options import (
    add_baseline_option,
    add_batch_options,
    add_bn_policy_option,
    add_epsilons_option,
    baseline_runs,
    batch_checks,
    epsilons_check,
    get_runs,
    progress_bar,
    sb_lb_configs,
    seed_runs,
)
from keskar_repro.report.settings import Settings, float_list, int_list

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
DEFAULT_OUT = REPO / "figures"
DATASETS = ("mnist", "mnist10k", "fashion_mnist")
KERNEL_INIT_NAMES = ("glorot_uniform", "lecun_normal")  # models.KERNEL_INITS (no JAX here)
# What the figure scripts use through this module (`experiment.X`), defined beside it.
__all__ = [
    "BATCH_SIZE_PARTS", "FigureSpec", "Parts", "Settings", "UserError", "add_baseline_option",
    "add_batch_options", "add_bn_policy_option", "add_epsilons_option", "baseline_runs",
    "batch_checks", "check_parts", "cli", "epsilons_check", "figure_stem", "float_list",
    "get_runs", "int_list", "load_dataset", "main", "merge_parts", "parse", "parser",
    "progress_bar", "results_path", "sb_lb_configs", "seed_runs", "specs", "unit_order",
]  # fmt: skip


PROVENANCE_KEYS = ("command", "config", "dataset", "environment", "started", "wall_seconds")
# config keys that every results JSON holds, None where they do not apply to a figure
CONFIG_PROVENANCE = ("bn_policy", "batch_note")


def _no_options(parser: argparse.ArgumentParser) -> None:
    return None


def _no_checks(settings: Settings) -> dict[str, bool]:
    return {}


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """One figure script, declared once at the end of its file
    (`SPEC = experiment.FigureSpec(name=..., ...)`); `main(spec)` runs it."""

    name: str  # the script: experiments/<name>.py
    stem: str  # results <out>/<stem>_<dataset>_<preset>.json
    doc: str  # the script's docstring: --help shows its first paragraph
    order: int  # position in make_all: scripts whose runs others reuse come first
    presets: dict[str, dict[str, Any]]  # option defaults per --preset ("paper", "quick")
    # (settings, dataset, resolved) -> results; what it determines goes in `resolved`
    compute: Callable[[Settings, Any, dict], dict]
    summarize: Callable[[dict], dict]  # results -> results["summary"]
    text: Callable[[dict], str]  # results -> what the terminal shows
    draw: Callable[[dict, Settings], list[str]]  # results, settings -> files written
    options: Callable[[argparse.ArgumentParser], None] = _no_options  # the script's own flags
    checks: Callable[[Settings], dict[str, bool]] = _no_checks  # "--flag" -> possible
    parts: Parts | None = None  # how --merge combines parts; None: the script has no --merge
    bn_policy: str | None = None  # the policy it evaluates under, when not an option of its own


def parser(spec: FigureSpec) -> argparse.ArgumentParser:
    """The script's ArgumentParser: the common options, then the spec's own (default None
    where a preset supplies the value)."""
    p = argparse.ArgumentParser(
        prog=f"{spec.name}.py",
        description=spec.doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Defaults come from --preset; any option given overrides it. Presets: "
        + "; ".join(f"{name}: {_describe(values)}" for name, values in spec.presets.items()),
    )
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default=None,
        help="default: full MNIST when present locally or downloadable, else mnist10k",
    )
    p.add_argument("--data-dir", default=None, help="folder with the four IDX files")
    p.add_argument("--preset", choices=sorted(spec.presets), default="paper")
    p.add_argument(
        "--hidden",
        type=lambda s: tuple(int_list(s)),
        default=(512,) * 5,
        help="hidden widths, comma-separated (default F1: 512,512,512,512,512)",
    )
    p.add_argument(
        "--init",
        choices=sorted(KERNEL_INIT_NAMES),
        default="glorot_uniform",
        help="Dense kernel initialiser (default glorot_uniform, the authors' Keras 1 default; "
        "lecun_normal: Flax's, used by the figures committed before glorot_uniform became the "
        "default)",
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
        "program; default: 1 on a CPU, where vmapping was measured slower than training runs "
        "one after another, all of them on a GPU/TPU (keskar_repro.training.train)",
    )
    p.add_argument("--replot", action="store_true", help="redraw figures from the JSON only")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    if spec.parts is not None:
        p.add_argument(
            "--merge",
            nargs="+",
            metavar="JSON",
            help="merge the results JSON of parts (runs on different "
            f"{spec.parts.what}, same settings) into "
            "<out>/<stem>_<dataset>_<preset>.json and draw it; computes nothing",
        )
    spec.options(p)
    return p


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def parse(spec: FigureSpec, argv: list[str] | None) -> Settings:
    """The `Settings` of the command line `argv`: parsed, unset options filled from the preset;
    impossible settings rejected with one line naming the option (exit status 2)."""
    p = parser(spec)
    values = vars(p.parse_args(argv))  # the one place a Namespace is read
    for name, value in spec.presets[values["preset"]].items():
        if name not in values:  # a typo in a script's PRESETS, not the user's mistake
            raise ValueError(
                f"preset {values['preset']!r} of {spec.name} sets {name!r}: no such option"
            )
        if values[name] is None:
            values[name] = value
    common = {f.name for f in dataclasses.fields(Settings)} - {"options"}
    merge = values.pop("merge", None)
    settings = Settings(
        **{k: v for k, v in values.items() if k in common},
        merge=tuple(merge) if merge else None,
        options={k: v for k, v in values.items() if k not in common},
    )
    problems = {
        "--hidden": len(settings.hidden) >= 1 and min(settings.hidden) >= 1,
        "--runs-per-program": settings.runs_per_program is None or settings.runs_per_program >= 1,
        **spec.checks(settings),
    }
    for flag, ok in problems.items():
        if not ok:
            p.error(f"{flag}={getattr(settings, flag[2:].replace('-', '_'))} is impossible")
    return settings


def load_dataset(settings: Settings):
    """The requested dataset, or the default: full MNIST if obtainable, else mnist10k (with a
    notice); its `name` is the dataset the settings then name."""
    from keskar_repro import data

    if settings.dataset is not None:
        return data.load(settings.dataset, data_dir=settings.data_dir)
    try:
        dataset = data.load("mnist", data_dir=settings.data_dir)
    except data.DataUnavailableError as err:
        print(
            f"notice: full MNIST is not available ({str(err).splitlines()[0]}); "
            "using the shipped mnist10k (8,000 train / 2,000 test).",
            file=sys.stderr,
        )
        dataset = data.load("mnist10k")
    return dataset


def results_path(settings: Settings, stem: str) -> Path:
    return Path(settings.out) / f"{stem}_{settings.dataset}_{settings.preset}.json"


def figure_stem(settings: Settings, name: str) -> str:
    """<out>/<name>_<dataset>_<preset> (plots.save_figure adds .png and .pdf)."""
    return str(Path(settings.out) / f"{name}_{settings.dataset}_{settings.preset}")


def _command(spec: FigureSpec, argv: list[str] | None) -> str:
    """The command line that made a results JSON."""
    return f"python experiments/{spec.name}.py " + " ".join(sys.argv[1:] if argv is None else argv)


def _header(spec: FigureSpec, settings: Settings, argv: list[str] | None, dataset) -> dict:
    """The start of a results JSON: command, configuration and dataset provenance."""
    return {
        "command": _command(spec, argv),
        "config": settings.config(),
        "dataset": dataset.provenance,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _show(spec: FigureSpec, results: dict, settings: Settings) -> None:
    print(spec.text(results))
    for f in spec.draw(results, settings):
        print(f"wrote {f}")


def replot(spec: FigureSpec, settings: Settings) -> int:
    """Redraw the figures (and reprint the summary) from the results JSON alone."""
    if settings.dataset is None:
        raise UserError("--replot needs --dataset (and the --preset) of the results to draw")
    path = results_path(settings, spec.stem)
    if not path.is_file():
        raise UserError(f"no results at {path}; run without --replot first")
    from keskar_repro.store.files import read_json

    _show(spec, read_json(path), settings)
    return 0


def merge(spec: FigureSpec, settings: Settings, argv: list[str] | None = None) -> int:
    """--merge: read the parts, check they fit, merge, summarize, write and draw."""
    from keskar_repro.store.files import read_json, write_atomic

    if settings.dataset is None:
        raise UserError("--merge needs --dataset (and the --preset) of the parts")
    loaded = []
    for path in settings.merge:
        if not Path(path).is_file():
            raise UserError(f"no results at {path}; give the results JSON of each part")
        results = read_json(path)
        if not isinstance(results, dict) or "config" not in results:
            raise UserError(f"{path} is not a results JSON of {spec.name}; give each part's")
        loaded.append((path, results))
    check_parts(spec.parts, loaded, settings)
    results = merge_parts(spec.parts, loaded)
    results["command"] = _command(spec, argv)
    results["summary"] = spec.summarize(results)
    path = results_path(settings, spec.stem)
    write_atomic(path, json.dumps(results, indent=1))
    print(f"wrote {path} ({len(loaded)} parts)")
    _show(spec, results, settings)
    return 0


def main(spec: FigureSpec, argv: list[str] | None = None) -> int:
    """The whole script: parse; --replot, or load the data, compute, summarize, write the JSON
    atomically (what `compute` resolved added to its config), print, draw."""
    settings = parse(spec, argv)
    if settings.replot:
        return replot(spec, settings)
    if settings.merge:
        return merge(spec, settings, argv)
    from keskar_repro.devices.distributed import initialize_from_env
    from keskar_repro.store.files import environment, write_atomic

    initialize_from_env()  # a multi-process job when the environment says so

    t0 = time.time()
    dataset = load_dataset(settings)
    settings = settings.replace(dataset=dataset.name)
    results = _header(spec, settings, argv, dataset)
    resolved: dict[str, Any] = {}
    results.update(spec.compute(settings, dataset, resolved))
    results["config"].update(resolved)
    for key in CONFIG_PROVENANCE:
        results["config"].setdefault(key, spec.bn_policy if key == "bn_policy" else None)
    results["summary"] = spec.summarize(results)
    results["environment"] = environment()
    results["wall_seconds"] = time.time() - t0
    path = results_path(settings, spec.stem)
    write_atomic(path, json.dumps(results, indent=1))
    print(f"wrote {path}")
    _show(spec, results, settings)
    print(f"wall time {results['wall_seconds']:.0f} s")
    return 0


def cli(spec: FigureSpec, argv: list[str] | None = None) -> None:
    """Run `spec` as a program: a UserError is one line on stderr and exit status 2."""
    try:
        sys.exit(main(spec, argv))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def specs() -> list[FigureSpec]:
    """The spec of every script in experiments/ (each module's `SPEC`), in make_all order."""
    if str(EXPERIMENTS) not in sys.path:
        sys.path.insert(0, str(EXPERIMENTS))
    found = []
    for path in sorted(EXPERIMENTS.glob("*.py")):
        spec = getattr(importlib.import_module(path.stem), "SPEC", None)
        if isinstance(spec, FigureSpec):
            found.append(spec)
    return sorted(found, key=lambda s: (s.order, s.name))
