"""Where a dataset's files come from: the shipped mnist10k split, folders, the cache, a
checksummed download from mirrors, and tensorflow-datasets."""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keskar_repro.data.idx import _pair, _read_bytes, _read_checked
from keskar_repro.data.specs import (
    _IMAGE_SHAPE,
    _MNIST10K_N_TEST,
    _MNIST10K_SPLIT_DESCRIPTION,
    _MNIST_T10K_IMAGES,
    _MNIST_T10K_LABELS,
    _NUM_CLASSES,
    _READ_TIMEOUT_S,
    _TFDS_BATCH,
    CACHE_ENV_VAR,
    DataFileError,
    Dataset,
    DatasetSpec,
    DataUnavailableError,
    FileSpec,
)

# ---------------------------------------------------------------------------------------------
# mnist10k


def _stratified_test_indices(images: np.ndarray, labels: np.ndarray, n_test: int) -> np.ndarray:
    """Sorted indices of the test part of the fixed, hash-ordered stratified split.

    Depends only on the bytes (not on any random number generator), so it never changes; the
    rule is `_MNIST10K_SPLIT_DESCRIPTION`.
    """
    n = labels.shape[0]
    counts = np.bincount(labels, minlength=_NUM_CLASSES)
    quota = [int(c) * n_test // n for c in counts]
    remainder = [int(c) * n_test % n for c in counts]
    for c in sorted(range(len(counts)), key=lambda c: (-remainder[c], c))[: n_test - sum(quota)]:
        quota[c] += 1
    flat = np.ascontiguousarray(images.reshape(n, -1))
    test = []
    for c, k in enumerate(quota):
        members = np.flatnonzero(labels == c)
        keys = [
            hashlib.sha256(flat[i].tobytes() + int(i).to_bytes(4, "big")).digest() for i in members
        ]
        order = sorted(range(len(members)), key=keys.__getitem__)
        test.extend(int(members[j]) for j in order[:k])
    return np.array(sorted(test), dtype=np.int64)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _load_mnist10k() -> Dataset:
    """The shipped MNIST test set, split 8,000 / 2,000 (see `_MNIST10K_SPLIT_DESCRIPTION`)."""
    root = importlib.resources.files("keskar_repro") / "datasets"
    arrays, records = [], []
    for spec in (_MNIST_T10K_IMAGES, _MNIST_T10K_LABELS):
        resource = root / spec.filename
        where = f"keskar_repro/datasets/{spec.filename}"
        try:
            stored = resource.read_bytes()
        except OSError as e:
            raise DataUnavailableError(
                f"{where} is missing from the installed package ({e}); reinstall keskar-repro."
            ) from e
        array, record = _read_checked(stored, True, spec, where)
        arrays.append(array)
        records.append(record)
    images, labels = _pair(arrays[0], arrays[1], records[0]["file"], records[1]["file"], 10_000)
    test_idx = _stratified_test_indices(images, labels, _MNIST10K_N_TEST)
    is_test = np.zeros(labels.shape[0], dtype=bool)
    is_test[test_idx] = True
    x_train, y_train = _readonly(images[~is_test]), _readonly(labels[~is_test])
    x_test, y_test = _readonly(images[is_test]), _readonly(labels[is_test])
    provenance = {
        "name": "mnist10k",
        "source": "package",
        "location": "keskar_repro/datasets",
        "files": records,
        "verified": all(r["verified"] for r in records),
        "split": {
            "description": _MNIST10K_SPLIT_DESCRIPTION,
            "test_indices_sha256": _indices_sha256(test_idx),
            "train_class_counts": np.bincount(y_train, minlength=_NUM_CLASSES).tolist(),
            "test_class_counts": np.bincount(y_test, minlength=_NUM_CLASSES).tolist(),
        },
        "n_train": int(y_train.shape[0]),
        "n_test": int(y_test.shape[0]),
    }
    return Dataset("mnist10k", x_train, y_train, x_test, y_test, provenance)


def _indices_sha256(indices: np.ndarray) -> str:
    """sha256 of the indices written as ASCII decimals joined by commas (easy to recompute)."""
    return hashlib.sha256(",".join(str(int(i)) for i in indices).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Four-file datasets: folders, cache, download


def cache_folder(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder the cache keeps `name`'s files in: <cache_dir or $KESKAR_REPRO_DATA or
    ~/.cache/keskar_repro>/<name>. Nothing is created."""
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "keskar_repro"
    return Path(cache_dir).expanduser() / name


def _find_file(spec: DatasetSpec, folder: Path, file: FileSpec) -> Path | None:
    """The first existing copy of `file` in `folder` (also <folder>/raw and torchvision's
    <folder>/<Name>/raw), gzipped preferred, also under the ".idx" spelling."""
    subdirs = [folder, folder / "raw"]
    if spec.torchvision_dir:
        subdirs.append(folder / spec.torchvision_dir / "raw")
    names = [file.filename, file.stem, file.stem.replace("-idx", ".idx")]
    for sub in subdirs:
        for fname in names:
            if (sub / fname).is_file():
                return sub / fname
    return None


def _find_all(spec: DatasetSpec, folder: Path) -> dict[str, Path | None]:
    return {f.filename: _find_file(spec, folder, f) for f in spec.files}


def _file_list(spec: DatasetSpec) -> str:
    return ", ".join(f.filename for f in spec.files)


def _load_folder(spec: DatasetSpec, folder: Path, source: str) -> Dataset:
    """Read, verify and check the four files of `spec` found in `folder`."""
    found = _find_all(spec, folder)
    missing = [fname for fname, path in found.items() if path is None]
    if missing:
        raise DataUnavailableError(
            f"{spec.name}: {folder} lacks {', '.join(missing)} (looked for these names, gzipped "
            f"or not, also in {folder / 'raw'}). Put the four files {_file_list(spec)} there, "
            f"or use load('mnist10k'), which needs no files."
        )
    arrays, records = [], []
    for file in spec.files:
        path = found[file.filename]
        assert path is not None
        stored = _read_bytes(path)
        array, record = _read_checked(stored, path.name.endswith(".gz"), file, str(path))
        record["path"] = str(path)
        arrays.append(array)
        records.append(record)
    paths = [r["path"] for r in records]
    x_train, y_train = _pair(arrays[0], arrays[1], paths[0], paths[1], spec.n_train)
    x_test, y_test = _pair(arrays[2], arrays[3], paths[2], paths[3], spec.n_test)
    provenance = {
        "name": spec.name,
        "source": source,
        "location": str(folder),
        "files": records,
        "verified": all(r["verified"] for r in records),
        "split": {
            "description": f"official {spec.title} split: train-* files are train, "
            "t10k-* files are test"
        },
        "n_train": int(y_train.shape[0]),
        "n_test": int(y_test.shape[0]),
    }
    return Dataset(spec.name, x_train, y_train, x_test, y_test, provenance)


def _options(spec: DatasetSpec, cache: Path) -> str:
    """The ways to provide the data, for error messages."""
    extra = f"; or {spec.hint}" if spec.hint else ""
    return (
        f"Either pass data_dir=<folder with {_file_list(spec)}> (gzipped or not; a torchvision "
        f"{spec.torchvision_dir or spec.title}/raw folder works); or put those files in {cache} "
        f"(or set ${CACHE_ENV_VAR} / cache_dir=){extra}; or use load('mnist10k'), the offline "
        "MNIST test set shipped with the package."
    )


def _short_reason(e: BaseException) -> str:
    """A short reason for a failed request (requests' own messages run to several lines)."""
    status = getattr(getattr(e, "response", None), "status_code", None)
    if status is not None:
        return f"HTTP {status}"
    m = re.search(r"\[Errno -?\d+\][^'\")]*", str(e))
    if m:
        return m.group(0).strip()
    return f"{type(e).__name__}: {str(e)[:120]}"


def _download(
    spec: DatasetSpec,
    folder: Path,
    files: Sequence[FileSpec],
    mirrors: Sequence[str],
    connect_timeout: float,
) -> None:
    """Fetch `files` into `folder` from the first mirror that has them, checksum-verified.

    pooch downloads into a temporary file next to the target and moves it in only if its hash
    matches, so a failed or rejected download leaves nothing behind. There are no retries; a
    host that cannot be reached is not tried again for the other files, so with no network
    this fails after at most one connect timeout per mirror.
    """
    import pooch  # lazy: pulls in requests
    import requests

    downloader = pooch.HTTPDownloader(progressbar=False, timeout=(connect_timeout, _READ_TIMEOUT_S))
    unreachable: set[str] = set()
    folder_existed = folder.exists()
    for file in files:
        known_hash = sorted(file.gz_hashes, key=lambda h: not h.startswith("sha256:"))[0]
        failures = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + file.filename
            host = urllib.parse.urlsplit(url).netloc
            if host in unreachable:
                failures.append(f"{url}: skipped, {host} unreachable")
                continue
            try:
                pooch.retrieve(
                    url, known_hash, fname=file.filename, path=folder, downloader=downloader
                )
                break
            except requests.exceptions.HTTPError as e:
                failures.append(f"{url}: {_short_reason(e)}")
            except requests.exceptions.ConnectTimeout:
                unreachable.add(host)
                failures.append(f"{url}: no connection within {connect_timeout:g} s")
            except requests.exceptions.RequestException as e:
                unreachable.add(host)
                failures.append(f"{url}: {_short_reason(e)}")
            except ValueError:  # pooch: hash mismatch (the temporary file is deleted)
                failures.append(f"{url}: checksum mismatch, file rejected")
        else:
            if not folder_existed and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()  # leave the cache as it was
            raise DataUnavailableError(
                f"{spec.name}: not found locally, and the download failed ("
                + "; ".join(failures)
                + "). "
                + _options(spec, folder)
            )


def _load_tfds(spec: DatasetSpec, data_dir: str | os.PathLike[str] | None) -> Dataset:
    """Load through tensorflow-datasets, iterating batches into numpy arrays.

    (`tfds.load(..., batch_size=-1)` crashed the process under `tfds.testing.mock_data` with
    tensorflow 2.21 / tensorflow-datasets 4.9.10, so the dataset is iterated instead.)
    """
    try:
        import tensorflow_datasets as tfds  # lazy: importing it imports tensorflow
    except ImportError as e:
        raise DataUnavailableError(
            f"source='tfds' needs tensorflow-datasets ({e}); "
            "`pip install 'keskar-repro[tfds]'`, or use another source."
        ) from e
    splits = {}
    for split in ("train", "test"):
        try:
            ds, info = tfds.load(
                spec.tfds_name,
                split=split,
                data_dir=None if data_dir is None else os.fspath(data_dir),
                with_info=True,
                shuffle_files=False,
            )
        except Exception as e:  # tfds raises many kinds (not found, network, ...)
            raise DataUnavailableError(
                f"{spec.name}: tensorflow-datasets could not load {spec.tfds_name!r} "
                f"split {split!r}: {type(e).__name__}: {e}"
            ) from e
        images, labels = [], []
        for batch in tfds.as_numpy(ds.batch(_TFDS_BATCH)):
            images.append(np.asarray(batch["image"], dtype=np.uint8))
            labels.append(np.asarray(batch["label"]))
        where = f"tfds:{spec.tfds_name}/{split}"
        x = (
            np.concatenate(images).reshape(-1, *_IMAGE_SHAPE)
            if images
            else np.zeros((0, *_IMAGE_SHAPE), np.uint8)
        )
        y = np.concatenate(labels) if labels else np.zeros((0,), np.int64)
        if y.size and (int(y.min()) < 0 or int(y.max()) >= _NUM_CLASSES):
            raise DataFileError(f"{where}: labels outside 0..{_NUM_CLASSES - 1}.")
        splits[split] = (_readonly(x), _readonly(y.astype(np.int32)), info)
    (x_train, y_train, info), (x_test, y_test, _) = splits["train"], splits["test"]
    provenance = {
        "name": spec.name,
        "source": "tfds",
        "location": f"tfds:{info.name}:{info.version}",
        "tfds_version": str(tfds.__version__),
        "files": [],
        "verified": False,
        "arrays_sha256": {
            key: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
            for key, a in (
                ("x_train", x_train),
                ("y_train", y_train),
                ("x_test", x_test),
                ("y_test", y_test),
            )
        },
        "split": {
            "description": f"TFDS splits 'train' and 'test' of {spec.tfds_name!r}, "
            "in TFDS's stored order"
        },
        "n_train": int(y_train.shape[0]),
        "n_test": int(y_test.shape[0]),
    }
    return Dataset(spec.name, x_train, y_train, x_test, y_test, provenance)
