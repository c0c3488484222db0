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

Parts: a figure too long for one sitting (full MNIST on a CPU) declares `Parts`: which config
field names its units (seeds, batch sizes), and which results lists hold one entry per unit.
Each part is an ordinary run of the script on some of the units, written to its own --out;
`--merge A.json B.json ...` then checks that the parts differ only in their units (same
dataset files, same settings, no unit twice; a figure may let some list settings differ, and
the merge keeps their union, `Parts.unions`), concatenates their lists, summarizes the whole
as if it had been measured at once, and writes and draws it like any run, recording every
part's command, start and wall time. Nothing is loaded or computed by a merge.

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
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from keskar_repro.errors import UserError
from keskar_repro.training.bn_policies import BN_POLICIES, DEFAULT_BN_POLICY

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
DEFAULT_OUT = REPO / "figures"
DATASETS = ("mnist", "mnist10k", "fashion_mnist")
KERNEL_INIT_NAMES = ("glorot_uniform", "lecun_normal")  # models.KERNEL_INITS (no JAX here)


@dataclasses.dataclass(frozen=True)
class Parts:
    """How a figure measured in parts is merged (see the module docstring)."""

    units: Callable[[dict], list]  # a results JSON -> its units (numbers or strings)
    field: str  # config key of the merged JSON that holds the union of the units, sorted
    what: str  # the units in words, for --help and errors: "seeds", "batch sizes"
    lists: tuple[str, ...]  # results keys with one entry per measurement, concatenated
    free: tuple[str, ...] = ()  # config keys that may differ between parts (set to None)
    # config keys (lists) that may differ between parts: the merged config holds their union,
    # the first part's values in order, then each further part's new ones (e.g. epsilons)
    unions: tuple[str, ...] = ()
    count: str | None = None  # config key that the merge sets to the number of units
    # the sorted union of the units -> the merged config's unit keys; default
    # {field: units, count: len(units)}. For units of two kinds (seeds and run names).
    merged: Callable[[list], dict] | None = None


def unit_order(unit: Any) -> tuple[bool, Any]:
    """Sort key of a part's units: numbers first (in order), then strings."""
    return isinstance(unit, str), unit


WHERE = ("out", "data_dir", "runs_dir", "runs_per_program")  # config keys that may differ

# The parts of a figure with one results row per run and a --batch-sizes option (Figure 4, the
# learning-rate x batch grid): a few batch sizes per part.
BATCH_SIZE_PARTS = Parts(
    units=lambda results: results["config"]["batch_sizes"], field="batch_sizes",
    what="batch sizes", lists=("rows",),
)  # fmt: skip


PROVENANCE_KEYS = ("command", "config", "dataset", "environment", "started", "wall_seconds")
# config keys that every results JSON holds, None where they do not apply to a figure
CONFIG_PROVENANCE = ("bn_policy", "batch_note")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of one invocation of a figure script, built once by `parse` from the
    command line and the preset; frozen (`replace` makes a changed copy).

    dataset           "mnist", "mnist10k" or "fashion_mnist"; None before the data are loaded
                      when the user gave none (full MNIST if available, else mnist10k).
    data_dir          the folder with the four IDX files, or None.
    preset            the preset whose values filled the options the user did not give.
    hidden            F1's hidden widths.
    init              the Dense kernel initialiser.
    out               the folder of the results JSON and figures.
    runs_dir          the saved runs (None: $KESKAR_REPRO_RUNS or ./runs).
    runs_per_program  runs of one shape trained in one vmapped program (None: the default).
    replot            redraw from the JSON only.
    no_progress       no progress bars.
    merge             the parts' results JSON to merge (None: compute).
    options           the script's own options by name (read as attributes: settings.epochs).
    """

    dataset: str | None
    data_dir: str | None
    preset: str
    hidden: tuple[int, ...]
    init: str
    out: str
    runs_dir: str | None
    runs_per_program: int | None
    replot: bool = False
    no_progress: bool = False
    merge: tuple[str, ...] | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["options"][name]
        except KeyError:
            raise AttributeError(f"this script has no option {name!r}") from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied (common fields or the script's options)."""
        fields = {f.name for f in dataclasses.fields(self)} - {"options"}
        options = {**self.options, **{k: v for k, v in changes.items() if k not in fields}}
        common = {k: v for k, v in changes.items() if k in fields}
        return dataclasses.replace(self, **common, options=options)

    def get(self, name: str, default: Any = None) -> Any:
        """An option's value, or `default` where this script has no such option."""
        return getattr(self, name, default)

    def config(self) -> dict[str, Any]:
        """The settings as a results JSON's config (without replot, no_progress and merge)."""
        hidden = {"replot", "no_progress", "merge", "options"}
        common = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**{k: v for k, v in common.items() if k not in hidden}, **self.options}


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


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def float_list(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


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


def _dataset_key(provenance: dict) -> tuple:
    """What makes two results' data the same: the name, the split sizes and every file's
    sha256 (not where the files were read from)."""
    files = tuple(sorted((f["file"], f["sha256"]) for f in provenance.get("files", [])))
    return (provenance["name"], provenance.get("n_train"), provenance.get("n_test"), files)


def _settings(config: dict, parts: Parts) -> dict:
    """A part's config without the keys parts may differ in, JSON-normalised (tuples become
    lists, as they are in a JSON read back)."""
    ignored = {*WHERE, *parts.free, *parts.unions, parts.field, "preset"}
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in ignored}))


def check_parts(parts: Parts, loaded: list[tuple[str, dict]], settings: Settings) -> None:
    """Raise a UserError naming the first part that does not fit: another dataset or preset
    than --dataset/--preset, other data files, other settings, or a unit measured twice."""
    first_path, first = loaded[0]
    expected = _settings(first["config"], parts)
    seen: dict[Any, str] = {}
    for path, results in loaded:
        config = results["config"]
        if (config["dataset"], config["preset"]) != (settings.dataset, settings.preset):
            raise UserError(
                f"{path} is {config['dataset']} preset {config['preset']}, not --dataset "
                f"{settings.dataset} --preset {settings.preset}; give the dataset and preset of "
                "the parts"
            )
        if _dataset_key(results["dataset"]) != _dataset_key(first["dataset"]):
            raise UserError(f"{path} was measured on other data files than {first_path}")
        a, b = _settings(config, parts), expected
        if a != b:
            diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            raise UserError(
                f"{path} differs from {first_path} in {', '.join(diff)}; parts must differ only "
                f"in their {parts.what}"
            )
        for unit in parts.units(results):
            if unit in seen:
                raise UserError(f"{parts.what} {unit} is in both {seen[unit]} and {path}")
            seen[unit] = path


def merge_parts(parts: Parts, loaded: list[tuple[str, dict]]) -> dict:
    """The results of all parts as one: the first part's header and config with `field` the
    sorted union of the units (and `count` their number; or what `parts.merged` makes of the
    union) and each key of `parts.unions` the union of the parts' values, each list in
    `parts.lists` concatenated in unit order (`unit_order`), wall_seconds the sum, and "parts"
    recording each part."""
    loaded = sorted(loaded, key=lambda pr: min(map(unit_order, parts.units(pr[1]))))
    merged = json.loads(json.dumps(loaded[0][1]))  # a copy
    units = sorted((u for _, r in loaded for u in parts.units(r)), key=unit_order)
    merged["config"].update({k: None for k in parts.free})
    for key in parts.unions:
        merged["config"][key] = list(dict.fromkeys(v for _, r in loaded for v in r["config"][key]))
    if parts.merged is not None:
        merged["config"].update(parts.merged(units))
    else:
        merged["config"][parts.field] = units
        if parts.count:
            merged["config"][parts.count] = len(units)
    for key in parts.lists:
        merged[key] = [item for _, r in loaded for item in r[key]]
    merged["wall_seconds"] = sum(r["wall_seconds"] for _, r in loaded)
    merged["parts"] = [
        {"file": path, "units": parts.units(r), "command": r["command"],
         "started": r["started"], "wall_seconds": r["wall_seconds"]}
        for path, r in loaded
    ]  # fmt: skip
    merged.pop("summary", None)
    return merged


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


# -- options and helpers shared by several scripts -------------------------------------------


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
