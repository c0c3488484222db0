"""The public entry points: `load(name)` a verified dataset, and whether it is `available`."""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Sequence
from pathlib import Path

from keskar_repro.data.sources import (
    _download,
    _find_all,
    _load_folder,
    _load_mnist10k,
    _load_tfds,
    _options,
    cache_folder,
)
from keskar_repro.data.specs import (
    _MNIST_T10K_IMAGES,
    _MNIST_T10K_LABELS,
    _REGISTRY,
    DATASET_NAMES,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_DATASET,
    SOURCES,
    DataArgumentError,
    Dataset,
    DatasetSpec,
    DataUnavailableError,
)

# ---------------------------------------------------------------------------------------------
# Public entry points


def _spec(name: str) -> DatasetSpec | None:
    if name not in DATASET_NAMES:
        raise DataArgumentError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}."
        )
    return None if name == "mnist10k" else _REGISTRY[name]


def _complete(found: dict[str, Path | None]) -> bool:
    return all(path is not None for path in found.values())


def load(
    name: str = DEFAULT_DATASET,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    source: str = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str] | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> Dataset:
    """Load dataset `name` (one of `DATASET_NAMES`) as a verified, read-only `Dataset`.

    Args:
      name: "mnist10k" (default; shipped, offline), "mnist" or "fashion_mnist".
      data_dir: a folder holding the four standard IDX files (gzipped or not; also found in its
        raw/ and torchvision <Name>/raw/ sub-folders). With source="tfds", TFDS's data_dir.
      source: "auto", "package", "dir", "cache", "download" or "tfds" (module docstring).
      cache_dir: root of the download cache (default $KESKAR_REPRO_DATA or
        ~/.cache/keskar_repro); files go in <cache_dir>/<name>/.
      mirrors: base URLs to download from, in order, instead of the standard mirrors.
      connect_timeout: seconds to wait for a mirror to accept the connection (no retries).

    Raises:
      ValueError: unknown name or source, or a source that does not fit the name.
      DataUnavailableError: the data are not present and could not be obtained; the message
        names data_dir, the cache folder, the file names and mnist10k.
      DataFileError: a file is present but truncated, corrupt, of the wrong checksum or shape.
    """
    spec = _spec(name)
    _check_source(name, spec, source, data_dir)
    if spec is None:
        return _load_mnist10k()
    if source == "tfds":
        return _load_tfds(spec, data_dir)
    if data_dir is not None:
        return _load_folder(spec, Path(data_dir).expanduser(), "dir")
    if source == "auto":
        for system_dir in spec.system_dirs:
            if _complete(_find_all(spec, Path(system_dir))):
                return _load_folder(spec, Path(system_dir), "dir")
    return _load_cache(spec, name, cache_folder(name, cache_dir), source, mirrors, connect_timeout)


def _check_source(name: str, spec, source: str, data_dir) -> None:
    """A DataArgumentError for a source that does not exist or does not fit the name."""
    if source not in SOURCES:
        raise DataArgumentError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}.")
    if spec is None and source not in ("auto", "package"):
        raise DataArgumentError(
            f"mnist10k ships with the package; source={source!r} does not apply."
        )
    if spec is not None and source == "package":
        raise DataArgumentError(f"only mnist10k ships with the package, not {name}.")
    if spec is not None and data_dir is not None and source not in ("auto", "dir", "tfds"):
        raise DataArgumentError(f"data_dir is used with source='auto' or 'dir', not {source!r}.")
    if spec is not None and data_dir is None and source == "dir":
        raise DataArgumentError("source='dir' needs data_dir=<folder with the IDX files>.")


def _load_cache(spec, name: str, folder: Path, source: str, mirrors, connect_timeout: float):
    """The dataset from the cache folder, downloading the missing files (not for "cache")."""
    found = _find_all(spec, folder)
    missing = [f for f in spec.files if found[f.filename] is None]
    if missing and source == "cache":
        raise DataUnavailableError(
            f"{name}: not in the cache (source='cache' never downloads; missing "
            f"{', '.join(f.filename for f in missing)} in {folder}). " + _options(spec, folder)
        )
    if missing:
        _download(spec, folder, missing, mirrors or spec.mirrors, connect_timeout)
    return _load_folder(spec, folder, "cache")


def available(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> bool:
    """Whether `load(name, data_dir=..., cache_dir=...)` finds all its files locally.

    Looks where source="auto" would look, without any network access: the package for
    mnist10k; `data_dir` if given; else the system folders, then the cache. Only checks that the
    files exist; `load` verifies them.
    """
    spec = _spec(name)
    if spec is None:
        root = importlib.resources.files("keskar_repro") / "datasets"
        return all((root / f.filename).is_file() for f in (_MNIST_T10K_IMAGES, _MNIST_T10K_LABELS))
    if data_dir is not None:
        return _complete(_find_all(spec, Path(data_dir).expanduser()))
    folders = [Path(d) for d in spec.system_dirs] + [cache_folder(name, cache_dir)]
    return any(_complete(_find_all(spec, folder)) for folder in folders)
