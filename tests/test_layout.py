"""The package's tree shows its data flow: subpackages in layers, every import pointing down
(module level or inside a function), the measurements usable on any model, no module longer
than a reader can hold, and the historical `keskar_repro.sharpness` still importable."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "keskar_repro"
# Each layer may import itself and the layers before it; `errors` is below everything.
LAYERS = ["errors", "devices", "data", "measures", "training", "store", "report"]
MAX_LINES = 520


def layer_of(module: str) -> str | None:
    """The layer of a dotted keskar_repro module name (None for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "keskar_repro" else None


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if n.startswith("keskar_repro.")}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("keskar_repro.")}
    return found


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_import_points_down(path):
    here = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if here == "sharpness":  # the re-export of measures.sharpness under its old name
        return
    rank = LAYERS.index(here)
    for name in imports(path):
        layer = layer_of(name)
        if layer is None or layer not in LAYERS:
            continue
        assert LAYERS.index(layer) <= rank, f"{path.name} ({here}) imports {name} ({layer})"


def test_the_measurements_import_only_themselves():
    for path in (PACKAGE / "measures").glob("*.py"):
        for name in imports(path):
            assert layer_of(name) == "measures", f"{path.name} imports {name}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_too_long_to_read(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES, path


def test_the_historical_sharpness_module_is_the_measures_one():
    import keskar_repro.measures.sharpness as new
    import keskar_repro.sharpness as old

    assert old.sharpness is new.sharpness and set(old.__all__) == set(new.__all__)
    assert all(getattr(old, name) is getattr(new, name) for name in new.__all__)
