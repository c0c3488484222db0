"""Datasets: finding, verifying, reading and splitting the MNIST-style IDX data the package uses.

`load(name)` returns a `Dataset`: uint8 images of shape (N, 28, 28), int32 labels in 0..9, and a
JSON-serialisable `provenance` dict saying exactly which bytes were used, so that the dataset is
part of every result.

Datasets (`DATASET_NAMES`):

- ``"mnist10k"`` (8,000 train / 2,000 test), the offline default: the 10,000 official MNIST test
  images, which ship inside the package, split once and forever (see `_stratified_test_indices`).
- ``"mnist"`` (60,000 / 10,000) and ``"fashion_mnist"`` (60,000 / 10,000): the four standard IDX
  files, from a folder you name, from a system folder (Debian's ``dataset-fashion-mnist`` puts
  Fashion-MNIST in /usr/share/datasets/fashion-mnist), from the local cache, filled once by a
  checksummed download, or through tensorflow-datasets.

Sources (``source=``):

- ``"auto"`` (default): mnist10k from the package; otherwise ``data_dir`` if given (and only it),
  else a system folder, else the cache, else a download into the cache.
- ``"package"``: the shipped files (mnist10k only).
- ``"dir"``: only ``data_dir``.
- ``"cache"``: only the cache; never touches the network.
- ``"download"``: the cache, downloading the files missing from it (verified, then moved in).
- ``"tfds"``: ``tensorflow_datasets.load`` (needs the ``tfds`` extra); ``data_dir`` is then
  passed to TFDS as its data_dir. TFDS stores examples in its own order, so the provenance has
  the sha256 of the arrays instead of file checksums and says ``verified: false``.

The cache folder is ``cache_dir`` if given, else ``$KESKAR_REPRO_DATA``, else
``~/.cache/keskar_repro``; each dataset has a sub-folder named after it (`cache_folder`).

Checksums. Every file read is checked against what is known about it: a gzipped file is accepted
when its own md5/sha256 matches the upstream one, or its decompressed content matches the known
sha256 of the decompressed IDX file (Debian recompressed Fashion-MNIST, so only the latter holds
there); an uncompressed file is accepted when its sha256 matches the known decompressed one. A
file that matches none of the known checksums is rejected. The one case with nothing to check
against is an uncompressed MNIST train file (only the gz checksums of those are published): it
is accepted after the IDX structure checks (magic, dimensions, payload size, counts, label
range) and recorded in the provenance as ``verified: false`` with its sha256.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import os
import re
import urllib.parse
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from keskar_repro.errors import UserError

DATASET_NAMES: tuple[str, ...] = ("mnist10k", "mnist", "fashion_mnist")
DEFAULT_DATASET = "mnist10k"
SOURCES: tuple[str, ...] = ("auto", "package", "dir", "cache", "download", "tfds")
CACHE_ENV_VAR = "KESKAR_REPRO_DATA"
DEFAULT_CONNECT_TIMEOUT_S = 5.0
_READ_TIMEOUT_S = 60.0
_TFDS_BATCH = 4096

_IMAGES_MAGIC = 0x00000803
_LABELS_MAGIC = 0x00000801
_NUM_CLASSES = 10
_IMAGE_SHAPE = (28, 28)


class DataFileError(UserError, ValueError):
    """A data file exists but is not what it should be (corrupt, truncated, wrong checksum)."""


class DataUnavailableError(UserError, RuntimeError):
    """The requested dataset is not present locally and could not be obtained."""


class DataArgumentError(UserError, ValueError):
    """An impossible `load` argument (unknown dataset or source, a folder where none applies)."""


@dataclass(frozen=True)
class FileSpec:
    """One IDX file as distributed, and what is known about its bytes."""

    filename: str  # as distributed upstream, e.g. "train-images-idx3-ubyte.gz"
    gz_hashes: tuple[str, ...]  # "sha256:<hex>" or "md5:<hex>" of the upstream gzip file
    raw_sha256: str | None  # sha256 of the decompressed IDX file; None when unknown

    @property
    def stem(self) -> str:
        """The file name without ".gz" (the name of the decompressed file)."""
        return self.filename.removesuffix(".gz")


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset's four IDX files come from and how many examples each split has."""

    name: str
    title: str
    train_images: FileSpec
    train_labels: FileSpec
    test_images: FileSpec
    test_labels: FileSpec
    n_train: int
    n_test: int
    mirrors: tuple[str, ...]  # base URLs, tried in order
    system_dirs: tuple[str, ...] = ()  # folders a system package installs the files into
    torchvision_dir: str = ""  # sub-folder name torchvision uses: <root>/<name>/raw
    tfds_name: str = ""
    hint: str = ""  # extra ways to get the data, for error messages

    @property
    def files(self) -> tuple[FileSpec, FileSpec, FileSpec, FileSpec]:
        """The four files: train images, train labels, test images, test labels."""
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


# MNIST (LeCun, Cortes, Burges; CC BY-SA 3.0). The gz checksums are the published ones; the
# decompressed sha256 of the two t10k files were computed from the files shipped in
# keskar_repro/datasets (whose gz sha256 match the published ones), those of the two train files
# from the byte-identical originals (gz sha256 the published ones) in the project's shared data,
# so an uncompressed copy of any of the four files is verified too.
_MNIST_T10K_IMAGES = FileSpec(
    "t10k-images-idx3-ubyte.gz",
    (
        "sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "md5:9fb629c4189551a2d022fa330f9573f3",
    ),
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
)
_MNIST_T10K_LABELS = FileSpec(
    "t10k-labels-idx1-ubyte.gz",
    (
        "sha256:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "md5:ec29112dd5afa0611ce80d1b7f02629c",
    ),
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
)

# Fashion-MNIST (Zalando Research; MIT). The gz md5 are the published ones; the decompressed
# sha256 were computed from Debian's dataset-fashion-mnist files (recompressed by Debian, same
# decompressed content).
_REGISTRY: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST",
        train_images=FileSpec(
            "train-images-idx3-ubyte.gz",
            (
                "sha256:440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
            ),
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        train_labels=FileSpec(
            "train-labels-idx1-ubyte.gz",
            (
                "sha256:3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "md5:d53e105ee54ea40749a09fcbcd1e9432",
            ),
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        test_images=_MNIST_T10K_IMAGES,
        test_labels=_MNIST_T10K_LABELS,
        n_train=60_000,
        n_test=10_000,
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        torchvision_dir="MNIST",
        tfds_name="mnist",
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        title="Fashion-MNIST",
        train_images=FileSpec(
            "train-images-idx3-ubyte.gz",
            ("md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",),
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        train_labels=FileSpec(
            "train-labels-idx1-ubyte.gz",
            ("md5:25c81989df183df01b3e8a0aad5dffbe",),
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        test_images=FileSpec(
            "t10k-images-idx3-ubyte.gz",
            ("md5:bef4ecab320f06d8554ea6380940ec79",),
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        test_labels=FileSpec(
            "t10k-labels-idx1-ubyte.gz",
            ("md5:bb300cfdad3c16e7a12a480ee83cd310",),
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
        n_train=60_000,
        n_test=10_000,
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        torchvision_dir="FashionMNIST",
        tfds_name="fashion_mnist",
        hint="on Debian/Ubuntu, `apt-get install dataset-fashion-mnist`",
    ),
}

# The mnist10k split, fixed forever: 20% of each class to test (largest-remainder rounding).
_MNIST10K_N_TEST = 2_000
_MNIST10K_SPLIT_DESCRIPTION = (
    "The 10,000 official MNIST test images (t10k files, original order, index i = 0..9999), "
    "split stratified by class: class c (n_c images) sends k_c images to test, k_c = "
    "floor(n_c * 2000 / 10000) plus one for the classes with the largest remainders of "
    "n_c * 2000 / 10000 (ties: smaller class first) until the k_c sum to 2000; within class c "
    "the images are ordered by sha256(image bytes (784, row-major uint8) + i as 4 bytes "
    "big-endian) and the first k_c go to test, the rest to train. Both splits keep index order."
)


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test pair of image and label arrays, read-only, with their provenance.

    Images are uint8 of shape (N, 28, 28); labels are int32 in 0..9. The arrays are not
    writeable. `provenance` is a JSON-serialisable dict: name, source, location, files (each
    with its sha256, the sha256 of its decompressed content and whether it was verified),
    split, n_train, n_test, verified.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return int(self.y_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test examples."""
        return int(self.y_test.shape[0])

    def __repr__(self) -> str:
        source = self.provenance.get("source", "?")
        return (
            f"Dataset(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test}, "
            f"source={source!r})"
        )


# ---------------------------------------------------------------------------------------------
# IDX files


def _decompress(stored: bytes, where: str) -> bytes:
    """The decompressed content of gzip bytes; DataFileError naming `where` if they are not."""
    fix = "delete it and fetch it again"
    if stored[:2] != b"\x1f\x8b":
        raise DataFileError(f"{where}: not a gzip file (bad magic bytes); {fix}.")
    try:
        return gzip.decompress(stored)
    except (OSError, EOFError, zlib.error) as e:
        raise DataFileError(f"{where}: corrupt or truncated gzip data ({e}); {fix}.") from e


def _parse_idx(raw: bytes, where: str) -> np.ndarray:
    """The uint8 array in the bytes of an IDX file, after checking magic, dimensions and size."""
    fix = "it is not a valid IDX file (truncated or corrupt?); delete it and fetch it again"
    if len(raw) < 4:
        raise DataFileError(f"{where}: only {len(raw)} bytes, too short for an IDX header; {fix}.")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in (_IMAGES_MAGIC, _LABELS_MAGIC):
        raise DataFileError(
            f"{where}: IDX magic number 0x{magic:08x}, expected 0x{_IMAGES_MAGIC:08x} (uint8 "
            f"images) or 0x{_LABELS_MAGIC:08x} (uint8 labels); {fix}."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFileError(f"{where}: IDX header cut short ({len(raw)} bytes); {fix}.")
    dims = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    size = int(np.prod(dims, dtype=np.int64))
    if len(raw) != header + size:
        what = "truncated" if len(raw) < header + size else "has trailing bytes"
        raise DataFileError(
            f"{where}: IDX payload {what}: dimensions {dims} need {size} bytes, found "
            f"{len(raw) - header}; {fix}."
        )
    return np.frombuffer(raw, dtype=np.uint8, count=size, offset=header).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    """The bytes of a file; DataFileError naming it if it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataFileError(f"{path}: cannot be read ({e}).") from e


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an MNIST-style IDX file (gzipped if its name ends in ".gz") into a uint8 array.

    Images (magic 0x00000803) come back as (N, rows, cols), labels (magic 0x00000801) as (N,).
    The array is read-only (a view of the file's bytes). Raises `DataFileError` (a ValueError)
    naming the file for bad gzip data, a wrong magic number or a truncated or oversized payload.
    """
    path = Path(path)
    stored = _read_bytes(path)
    raw = _decompress(stored, str(path)) if path.name.endswith(".gz") else stored
    return _parse_idx(raw, str(path))


def _verify(stored: bytes, raw: bytes, gz: bool, spec: FileSpec, where: str) -> dict[str, Any]:
    """Check a file's bytes against its known checksums; return its provenance record.

    A file is accepted when any applicable known checksum matches (gz md5/sha256 for a gzipped
    file, the decompressed sha256 for any file); rejected with DataFileError when some are known
    and none match; accepted with verified=False when none is known (uncompressed MNIST train).
    """
    stored_sha = hashlib.sha256(stored).hexdigest()
    raw_sha = hashlib.sha256(raw).hexdigest() if gz else stored_sha
    matched = None
    known = []
    if gz:
        for entry in spec.gz_hashes:
            algo, value = entry.split(":", 1)
            digest = stored_sha if algo == "sha256" else hashlib.new(algo, stored).hexdigest()
            known.append(f"{algo} of the gzip file {value}")
            if digest == value:
                matched = f"{algo} of the gzip file"
                break
    if matched is None and spec.raw_sha256 is not None:
        known.append(f"sha256 of the decompressed file {spec.raw_sha256}")
        if raw_sha == spec.raw_sha256:
            matched = "sha256 of the decompressed file"
    if matched is None and known:
        raise DataFileError(
            f"{where}: checksum mismatch: it is not the expected {spec.filename} (sha256 "
            f"{stored_sha}, decompressed sha256 {raw_sha}; expected {' or '.join(known)}). "
            "Delete it and fetch it again from a standard mirror."
        )
    return {
        "file": Path(where).name,
        "sha256": stored_sha,
        "raw_sha256": raw_sha,
        "verified": matched is not None,
        "checked_against": matched,
    }


def _read_checked(
    stored: bytes, gz: bool, spec: FileSpec, where: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decompress, parse (structure first) and verify one file's bytes."""
    raw = _decompress(stored, where) if gz else stored
    array = _parse_idx(raw, where)
    return array, _verify(stored, raw, gz, spec, where)


def _pair(
    images: np.ndarray, labels: np.ndarray, images_at: str, labels_at: str, n_expected: int
) -> tuple[np.ndarray, np.ndarray]:
    """Check an images/labels pair and return (uint8 images, int32 labels), both read-only."""
    if images.ndim != 3 or images.shape[1:] != _IMAGE_SHAPE:
        raise DataFileError(
            f"{images_at}: expected images of shape (N, 28, 28), found {images.shape}; "
            "is it a labels file, or another dataset's file?"
        )
    if labels.ndim != 1:
        raise DataFileError(
            f"{labels_at}: expected labels of shape (N,), found {labels.shape}; "
            "is it an images file?"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataFileError(
            f"{images_at} holds {images.shape[0]} images but {labels_at} holds "
            f"{labels.shape[0]} labels; the two files do not belong together, fetch both again."
        )
    if labels.shape[0] != n_expected:
        raise DataFileError(
            f"{images_at}, {labels_at}: {labels.shape[0]} examples, expected {n_expected}; "
            "these are not the files of this dataset (or of this split), fetch them again."
        )
    if labels.size and int(labels.max()) >= _NUM_CLASSES:
        raise DataFileError(
            f"{labels_at}: label {int(labels.max())} outside 0..{_NUM_CLASSES - 1}; "
            "not an MNIST-style labels file, fetch it again."
        )
    labels32 = labels.astype(np.int32)
    labels32.flags.writeable = False
    return images, labels32


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
