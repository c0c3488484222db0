"""Dataset specifications: each dataset's IDX files, their known checksums and mirrors.

The `keskar_repro.data` package finds, verifies, reads and splits the MNIST-style IDX data the
package uses.

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

from dataclasses import dataclass, field
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
