"""Datasets: finding, verifying, reading and splitting the MNIST-style IDX data the package uses.

`load(name)` returns a verified, read-only `Dataset` with its provenance. The modules, in the
order data flows through them: `specs` (what is known of each dataset's files), `idx` (reading
and checking an IDX file), `sources` (the shipped split, folders, the cache, the download,
tensorflow-datasets) and `registry` (the public `load` and `available`).
"""

from keskar_repro.data.idx import read_idx
from keskar_repro.data.registry import available, load
from keskar_repro.data.sources import cache_folder
from keskar_repro.data.specs import (
    _REGISTRY,
    CACHE_ENV_VAR,
    DATASET_NAMES,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_DATASET,
    SOURCES,
    DataArgumentError,
    DataFileError,
    Dataset,
    DatasetSpec,
    DataUnavailableError,
    FileSpec,
)

__all__ = [
    "CACHE_ENV_VAR",
    "DATASET_NAMES",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_DATASET",
    "SOURCES",
    "DataArgumentError",
    "DataFileError",
    "Dataset",
    "DatasetSpec",
    "DataUnavailableError",
    "FileSpec",
    "_REGISTRY",
    "available",
    "cache_folder",
    "load",
    "read_idx",
]
