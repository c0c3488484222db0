"""One door to every measurement: `measure(loss_fn, params, notions)` -> `Measurement`.

    m = measure(loss_fn, params, ["metric_2_1", "adaptive", "average"], key=0)
    m["metric_2_1"].value, m["average"].stderr, m.to_json()

The caller names the notions it wants (keys of `keskar_repro.measures.NOTIONS`: Metric 2.1 in
the full space and in a random subspace, the adaptive worst case, the average case at two
scales, the Hessian's largest eigenvalue and trace), optionally per layer, and gets one typed,
frozen record that serialises to JSON with every notion's full report (solver messages,
iterations, timings) and the settings.

Compilation. Each notion compiles its evaluation once per `loss_fn` object (and shapes,
dtypes and settings) and keeps the last 8 loss functions: call `measure` again with the SAME
function object and nothing is compiled again, whereas a new lambda or closure per call compiles
every time (about 1.5 s for a small MLP on a CPU). To measure many points of one model (runs,
checkpoints, seeds) with different data, write `loss_fn(params, data)` once and pass
`data=...`: the data are then an argument of the compiled program rather than constants baked
into it, so one compilation serves every call with the same shapes.

Keys. `key` is a JAX PRNG key (`jax.random.key(0)`) or an int seed (`0` means
`jax.random.key(0)`); notion `name` uses `fold_in(key, i)` where i is the notion's position in
the registry (`list(NOTIONS).index(name)`), so a notion's draws do not depend on which other
notions are measured with it. A notion that draws random numbers (`Notion.random`) without a
key is a ValueError.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from keskar_repro.measures.checks import check_key, jsonable, with_data
from keskar_repro.measures.options import MeasureSettings
from keskar_repro.measures.pytree import Mask, has_floating, layer_masks
from keskar_repro.measures.registry import NOTIONS, get_notion


@dataclasses.dataclass(frozen=True, eq=False)
class NotionValue:
    """One notion's result: `value` in its units (percent of 1 + f(x) for the sharpness notions;
    the Hessian's for the curvature ones), `stderr` (the Monte Carlo standard error; 0 for an
    estimator that does not average random draws), and `report`, the full record of the function
    that computed it (`SharpnessResult`, `AverageSharpnessResult`, `EigenvalueResult`, ...)."""

    name: str
    value: float
    stderr: float
    report: Any = dataclasses.field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """{"name", "value", "stderr", "report": the report's `to_dict()`}, JSON-ready."""
        return {"name": self.name, "value": self.value, "stderr": self.stderr,
                "report": jsonable(self.report)}  # fmt: skip


@dataclasses.dataclass(frozen=True, eq=False)
class Measurement:
    """What `measure` returns.

    values    {notion name: NotionValue} over the whole of params (empty when per_layer).
    layers    {layer name: {notion name: NotionValue}} when per_layer, else {}.
    settings  the `MeasureSettings` used.
    seconds   wall time of the call.
    """

    values: dict[str, NotionValue]
    layers: dict[str, dict[str, NotionValue]]
    settings: MeasureSettings
    seconds: float

    def __getitem__(self, name: str) -> NotionValue:
        return self.values[name]

    def to_dict(self) -> dict[str, Any]:
        """Every value with its report, the layers and the settings, JSON-ready."""
        return {
            "values": {k: v.to_dict() for k, v in self.values.items()},
            "layers": {
                layer: {k: v.to_dict() for k, v in values.items()}
                for layer, values in self.layers.items()
            },
            "settings": self.settings.to_dict(),
            "seconds": self.seconds,
        }

    def to_json(self) -> str:
        """`to_dict()` as one JSON line."""
        return json.dumps(self.to_dict(), sort_keys=True)


def _measure_all(
    loss_fn: Callable, params: Any, names: Sequence[str], settings: MeasureSettings, key: Any,
    mask: Mask,
) -> dict[str, NotionValue]:  # fmt: skip
    out = {}
    order = list(NOTIONS)
    for name in names:
        notion = get_notion(name)
        notion_key = None
        if notion.random:
            import jax

            notion_key = jax.random.fold_in(key, order.index(name))
        value, stderr, report = notion.compute(loss_fn, params, settings, notion_key, mask)
        out[name] = NotionValue(name, float(value), float(stderr), report)
    return out


def measure(
    loss_fn: Callable[..., Any],
    params: Any,
    notions: Sequence[str] | str = ("metric_2_1",),
    *,
    key: Any = None,
    settings: MeasureSettings | None = None,
    data: Any = None,
    mask: Mask = None,
    per_layer: bool = False,
    layer_depth: int = 1,
    **setting_fields: Any,
) -> Measurement:
    """Measure the named `notions` of `loss_fn` at `params`; see the module docstring.

    loss_fn     a JAX-differentiable `loss_fn(params) -> scalar` (or `loss_fn(params, data)`
                when `data` is given) over any pytree: the floating leaves (any float dtype) are
                measured, integer/bool/key leaves are held fixed (keskar_repro.measures.pytree).
    notions     names of registered notions (`NOTIONS`), or one name.
    key         a JAX key or an int seed; needed by the random notions.
    settings    a `MeasureSettings`; its fields may also be given as keywords
                (`measure(f, x, ["adaptive"], epsilon=5e-4)`).
    data        passed to loss_fn as its second argument, as an argument of the compiled
                programs (one compilation for every call with the same shapes).
    mask        restrict every notion to some leaves (a pytree prefix of bools or a callable
                on leaf paths).
    per_layer   measure each layer alone (`layer_masks(params, layer_depth)`) instead of the
                whole; layers without a floating entry are left out.

    Errors (ValueError, naming the argument): an unknown notion, a random notion without a key,
    invalid settings, and each notion's own argument errors (see its function).
    """
    t0 = time.perf_counter()
    names = [notions] if isinstance(notions, str) else list(notions)
    if not names:
        raise ValueError("notions is empty; name at least one of " + str(sorted(NOTIONS)))
    for name in names:
        get_notion(name)
    if settings is None:
        settings = MeasureSettings(**setting_fields)
    elif setting_fields:
        settings = dataclasses.replace(settings, **setting_fields)
    if any(get_notion(n).random for n in names):
        key = check_key(key, "the random notions " + str([n for n in names if NOTIONS[n].random]))
    f = with_data(loss_fn, data)
    if per_layer:
        if mask is not None:
            raise ValueError("per_layer measures each layer's own mask; do not pass mask too")
        layers = {
            layer: _measure_all(f, params, names, settings, key, layer_mask)
            for layer, layer_mask in _floating_layers(params, layer_depth).items()
        }
        return Measurement({}, layers, settings, time.perf_counter() - t0)
    values = _measure_all(f, params, names, settings, key, mask)
    return Measurement(values, {}, settings, time.perf_counter() - t0)


def _floating_layers(params: Any, depth: int) -> dict[str, Any]:
    """`layer_masks(params, depth)` without the layers that have no floating entry."""
    return {n: m for n, m in layer_masks(params, depth).items() if has_floating(params, m)}
