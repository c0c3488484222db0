"""Figures measured in parts: which units a part holds, the check that parts fit together, and
their merge into one results dictionary.

A figure too long for one sitting (full MNIST on a CPU) declares `Parts`: which config field
names its units (seeds, batch sizes), and which results lists hold one entry per unit. Each
part is an ordinary run of the script on some of the units, written to its own --out;
`--merge A.json B.json ...` (keskar_repro.report.experiment.merge) then checks that the parts
differ only in their units (same dataset files, same settings, no unit twice; a figure may let
some list settings differ, and the merge keeps their union, `Parts.unions`), concatenates their
lists and summarizes the whole as if it had been measured at once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from keskar_repro.errors import UserError
from keskar_repro.report.settings import Settings


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
