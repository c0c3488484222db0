"""Measurements of any differentiable `loss_fn(params) -> scalar` over any pytree: one entry
point, `measure(loss_fn, params, notions)`, over a registry of notions (`NOTIONS`): Metric 2.1
in the full space and in a random subspace (`sharpness`), the adaptive worst case and the
average case (`notions`), the Hessian's top eigenvalues and trace (`curvature`); and loss
landscapes around a point, filter-normalised 1-D and 2-D grids (`landscape`).
`keskar_repro.measures.sharpness` is the module of Metric 2.1; its function is
`keskar_repro.measures.sharpness.sharpness` (also `keskar_repro.sharpness.sharpness`).

Nothing here imports the package's data, training, store or report code, so research code can
use it on any model. The names below are loaded on first use: `from keskar_repro.measures
import NOTIONS, SolverOptions` does not start JAX.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "measure": "measurement",
    "Measurement": "measurement",
    "NotionValue": "measurement",
    "NOTIONS": "registry",
    "Notion": "registry",
    "register": "registry",
    "get_notion": "registry",
    "labels": "registry",
    "MeasureSettings": "options",
    "SolverOptions": "options",
    "SharpnessResult": "sharpness",
    "random_subspace": "sharpness",
    "adaptive_sharpness": "notions",
    "average_sharpness": "notions",
    "per_layer": "notions",
    "layer_masks": "pytree",
    "hvp_fn": "curvature",
    "top_eigenvalues": "curvature",
    "hessian_trace": "curvature",
    "spectral_density": "curvature",
    "filter_normalized_direction": "landscape",
    "grid_values": "landscape",
    "surface": "landscape",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'keskar_repro.measures' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"keskar_repro.measures.{_EXPORTS[name]}"), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
