"""The frozen settings of one invocation of a figure script (`Settings`), built once from the
command line and the preset by `experiment.parse` and passed down unchanged."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


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


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def float_list(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]
