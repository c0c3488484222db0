"""Tests of keskar_repro.data: the shipped MNIST-10k split, IDX checks, folders, cache, download."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import importlib.resources
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from keskar_repro import data

MNIST_T10K_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST10K_TEST_CLASS_COUNTS = [196, 227, 206, 202, 196, 178, 192, 206, 195, 202]
# Pinned forever: changing any of these changes the mnist10k dataset.
MNIST10K_TEST_INDICES_SHA256 = "05d9fa63230781acb588e55a953617a7192743c13d182bbbbc62a2c3098a8b6a"
MNIST10K_ARRAYS_SHA256 = {
    "x_train": "e8dae145bc1f291249be917623ca13202df56168583bb59037e083b338926d06",
    "y_train": "43a9c413847f1cc4a79fb0357df87f08b7fd76d265f3827c11f7e47bd790d02d",
    "x_test": "4f1e211210cbdc5d2e7ab370facd7cf87bc601bf7cda20796b607271f15aabad",
    "y_test": "d8e37066958c3c1a44afa351135b2d7a8148b6a2f9fb30c67b8a0bdf4814af3c",
}
SHIPPED_GZ_SHA256 = {  # /work/shared/data/README.md
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
N_TRAIN, N_TEST = 12, 5  # synthetic dataset sizes


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Talk to 127.0.0.1 directly even where a proxy is configured."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


# ---------------------------------------------------------------------------------------------
# Synthetic IDX data


def idx_bytes(array: np.ndarray) -> bytes:
    """The bytes of an IDX file holding a uint8 array (3-d images or 1-d labels)."""
    magic = 0x00000803 if array.ndim == 3 else 0x00000801
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return magic.to_bytes(4, "big") + dims + np.ascontiguousarray(array, np.uint8).tobytes()


def gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def synthetic_raw(seed: int = 0) -> dict[str, bytes]:
    """Decompressed contents of the four files of a tiny synthetic dataset."""
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (N_TRAIN, 28, 28))),
        "train-labels-idx1-ubyte": idx_bytes(np.arange(N_TRAIN) % 10),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (N_TEST, 28, 28))),
        "t10k-labels-idx1-ubyte": idx_bytes(np.arange(N_TEST) % 10),
    }


def synthetic_spec(raw: dict[str, bytes], **changes) -> data.DatasetSpec:
    """The registered "mnist" spec with checksums and sizes of the synthetic files."""
    files = {
        stem: data.FileSpec(
            stem + ".gz",
            ("sha256:" + hashlib.sha256(gz(content)).hexdigest(),),
            hashlib.sha256(content).hexdigest(),
        )
        for stem, content in raw.items()
    }
    spec = dataclasses.replace(
        data._REGISTRY["mnist"],
        train_images=files["train-images-idx3-ubyte"],
        train_labels=files["train-labels-idx1-ubyte"],
        test_images=files["t10k-images-idx3-ubyte"],
        test_labels=files["t10k-labels-idx1-ubyte"],
        n_train=N_TRAIN,
        n_test=N_TEST,
    )
    return dataclasses.replace(spec, **changes)


def write_files(folder: Path, raw: dict[str, bytes], compress: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, content in raw.items():
        if compress:
            (folder / (stem + ".gz")).write_bytes(gz(content))
        else:
            (folder / stem).write_bytes(content)


# ---------------------------------------------------------------------------------------------
# mnist10k


def test_mnist10k_shapes_dtypes_counts():
    ds = data.load("mnist10k")
    assert ds.name == "mnist10k"
    assert ds.x_train.shape == (8000, 28, 28) and ds.x_test.shape == (2000, 28, 28)
    assert ds.y_train.shape == (8000,) and ds.y_test.shape == (2000,)
    assert ds.x_train.dtype == np.uint8 and ds.x_test.dtype == np.uint8
    assert ds.y_train.dtype == np.int32 and ds.y_test.dtype == np.int32
    assert (ds.n_train, ds.n_test) == (8000, 2000)
    test_counts = np.bincount(ds.y_test, minlength=10)
    train_counts = np.bincount(ds.y_train, minlength=10)
    assert test_counts.tolist() == MNIST10K_TEST_CLASS_COUNTS
    assert (train_counts + test_counts).tolist() == MNIST_T10K_CLASS_COUNTS
    # Exactly 20% of each class, rounded to the nearest integer here.
    assert np.all(np.abs(test_counts - 0.2 * np.array(MNIST_T10K_CLASS_COUNTS)) < 0.5)
    for array in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert not array.flags.writeable
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"
    assert data.load().provenance == ds.provenance  # mnist10k is the default


def test_mnist10k_split_is_pinned_and_disjoint():
    ds = data.load("mnist10k")
    for key, expected in MNIST10K_ARRAYS_SHA256.items():
        assert hashlib.sha256(getattr(ds, key).tobytes()).hexdigest() == expected, key
    split = ds.provenance["split"]
    assert split["test_indices_sha256"] == MNIST10K_TEST_INDICES_SHA256
    assert split["test_class_counts"] == MNIST10K_TEST_CLASS_COUNTS
    # Recover each image's index in the t10k file (the 10,000 images are distinct).
    with importlib.resources.as_file(
        importlib.resources.files("keskar_repro") / "datasets" / "t10k-images-idx3-ubyte.gz"
    ) as path:
        full = data.read_idx(path)
    index_of = {image.tobytes(): i for i, image in enumerate(full)}
    assert len(index_of) == 10_000
    train_idx = [index_of[image.tobytes()] for image in ds.x_train]
    test_idx = [index_of[image.tobytes()] for image in ds.x_test]
    assert not set(train_idx) & set(test_idx)
    assert sorted(train_idx + test_idx) == list(range(10_000))
    assert train_idx == sorted(train_idx) and test_idx == sorted(test_idx)
    text = ",".join(map(str, test_idx)).encode()
    assert hashlib.sha256(text).hexdigest() == MNIST10K_TEST_INDICES_SHA256


def test_mnist10k_provenance():
    prov = data.load("mnist10k").provenance
    assert json.loads(json.dumps(prov)) == prov
    assert prov["name"] == "mnist10k" and prov["source"] == "package"
    assert (prov["n_train"], prov["n_test"]) == (8000, 2000)
    assert prov["verified"] is True
    assert {f["file"]: f["sha256"] for f in prov["files"]} == SHIPPED_GZ_SHA256
    assert all(f["verified"] and len(f["raw_sha256"]) == 64 for f in prov["files"])
    assert "sha256" in prov["split"]["description"]


def test_bad_names_and_sources():
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load("cifar10")
    with pytest.raises(ValueError, match="unknown source"):
        data.load("mnist", source="ftp")
    with pytest.raises(ValueError, match="ships with the package"):
        data.load("mnist10k", source="download")
    with pytest.raises(ValueError, match="needs data_dir"):
        data.load("mnist", source="dir")
    assert set(data.DATASET_NAMES) == {"mnist10k", "mnist", "fashion_mnist"}


def test_importing_data_does_not_import_tensorflow_or_pooch():
    code = (
        "import sys, keskar_repro.data; "
        "bad = [m for m in ('tensorflow', 'tensorflow_datasets', 'pooch') if m in sys.modules]; "
        "sys.exit(str(bad) if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST from Debian's dataset-fashion-mnist


@pytest.mark.skipif(
    not DEBIAN_FASHION.is_dir(),
    reason=f"{DEBIAN_FASHION} absent (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_from_debian_folder(tmp_path):
    assert data.available("fashion_mnist", cache_dir=tmp_path)
    start = time.perf_counter()
    ds = data.load("fashion_mnist", cache_dir=tmp_path)
    seconds = time.perf_counter() - start
    assert ds.x_train.shape == (60_000, 28, 28) and ds.x_test.shape == (10_000, 28, 28)
    assert ds.y_train.dtype == np.int32 and ds.x_train.dtype == np.uint8
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    prov = ds.provenance
    assert prov["source"] == "dir" and prov["location"] == str(DEBIAN_FASHION)
    assert prov["verified"] and all(
        f["checked_against"] == "sha256 of the decompressed file" for f in prov["files"]
    )
    assert json.loads(json.dumps(prov)) == prov
    assert not list(tmp_path.iterdir())  # the cache was not touched
    assert seconds < 5, seconds  # ~0.5 s on an idle core


# ---------------------------------------------------------------------------------------------
# IDX reader


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, compress):
    images = np.random.default_rng(1).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    labels = np.array([0, 9, 4], np.uint8)
    suffix = ".gz" if compress else ""
    for array, stem in ((images, "x-idx3-ubyte"), (labels, "y-idx1-ubyte")):
        raw = idx_bytes(array)
        path = tmp_path / (stem + suffix)
        path.write_bytes(gz(raw) if compress else raw)
        np.testing.assert_array_equal(data.read_idx(path), array)
        assert data.read_idx(str(path)).dtype == np.uint8


def _bad_files() -> dict[str, tuple[str, bytes, str]]:
    good = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    wrong_dtype = b"\x00\x00\x0d\x03" + good[4:]  # float32 IDX
    return {
        "truncated raw": ("a-idx3-ubyte", good[:-100], "truncated"),
        "truncated gz payload": ("b-idx3-ubyte.gz", gz(good[:-100]), "truncated"),
        "truncated gz stream": ("c-idx3-ubyte.gz", gz(good)[:30], "gzip"),
        "trailing bytes": ("d-idx3-ubyte", good + b"\x00", "trailing"),
        "wrong magic": ("e-idx3-ubyte", b"\x00\x00\x08\x04" + good[4:], "magic"),
        "wrong dtype byte": ("f-idx3-ubyte", wrong_dtype, "magic"),
        "garbage in .gz": ("g-idx3-ubyte.gz", b"<html>404 Not Found</html>", "not a gzip"),
        "bad gzip body": ("h-idx3-ubyte.gz", b"\x1f\x8b" + b"\x00" * 40, "gzip"),
        "header cut short": ("i-idx3-ubyte", good[:10], "header"),
        "empty": ("j-idx1-ubyte", b"", "too short"),
    }


@pytest.mark.parametrize("case", list(_bad_files()))
def test_read_idx_rejects_bad_files(tmp_path, case):
    fname, content, phrase = _bad_files()[case]
    path = tmp_path / fname
    path.write_bytes(content)
    with pytest.raises(data.DataFileError) as info:
        data.read_idx(path)
    message = str(info.value)
    assert fname in message and phrase in message
    assert "fetch it again" in message
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------------------------------
# Loading from a folder


@pytest.mark.parametrize("compress", [True, False])
def test_load_from_data_dir(tmp_path, monkeypatch, compress):
    raw = synthetic_raw()
    monkeypatch.setitem(data._REGISTRY, "mnist", synthetic_spec(raw))
    write_files(tmp_path / "idx", raw, compress=compress)
    assert data.available("mnist", data_dir=tmp_path / "idx")
    ds = data.load("mnist", data_dir=tmp_path / "idx", cache_dir=tmp_path / "cache")
    assert (ds.n_train, ds.n_test) == (N_TRAIN, N_TEST)
    np.testing.assert_array_equal(ds.y_train, np.arange(N_TRAIN) % 10)
    assert ds.x_train.tobytes() == raw["train-images-idx3-ubyte"][16:]
    prov = ds.provenance
    assert prov["source"] == "dir" and prov["verified"] is True
    expected = "gzip file" if compress else "decompressed file"
    assert all(expected in f["checked_against"] for f in prov["files"])
    assert [f["raw_sha256"] for f in prov["files"]] == [
        hashlib.sha256(c).hexdigest() for c in raw.values()
    ]
    assert not (tmp_path / "cache").exists()


def test_load_from_torchvision_layout(tmp_path, monkeypatch):
    raw = synthetic_raw()
    monkeypatch.setitem(data._REGISTRY, "mnist", synthetic_spec(raw))
    write_files(tmp_path / "root" / "MNIST" / "raw", raw, compress=False)
    ds = data.load("mnist", data_dir=tmp_path / "root")
    assert ds.n_train == N_TRAIN


def test_missing_file_in_data_dir(tmp_path, monkeypatch):
    raw = synthetic_raw()
    monkeypatch.setitem(data._REGISTRY, "mnist", synthetic_spec(raw))
    write_files(tmp_path, raw)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    assert not data.available("mnist", data_dir=tmp_path)
    with pytest.raises(data.DataUnavailableError, match="t10k-labels-idx1-ubyte.gz"):
        data.load("mnist", data_dir=tmp_path)


def test_wrong_checksum_in_data_dir(tmp_path, monkeypatch):
    raw = synthetic_raw()
    monkeypatch.setitem(data._REGISTRY, "mnist", synthetic_spec(raw))
    other = synthetic_raw(seed=1)
    write_files(tmp_path, {**raw, "t10k-images-idx3-ubyte": other["t10k-images-idx3-ubyte"]})
    with pytest.raises(data.DataFileError, match="checksum mismatch") as info:
        data.load("mnist", data_dir=tmp_path)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)


def test_mismatched_image_and_label_lengths(tmp_path, monkeypatch):
    raw = synthetic_raw()
    raw["train-labels-idx1-ubyte"] = idx_bytes(np.arange(N_TRAIN - 2) % 10)
    monkeypatch.setitem(data._REGISTRY, "mnist", synthetic_spec(raw))
    write_files(tmp_path, raw)
    with pytest.raises(data.DataFileError) as info:
        data.load("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message
    assert f"{N_TRAIN} images" in message and f"{N_TRAIN - 2} labels" in message


def test_labels_out_of_range(tmp_path, monkeypatch):
    raw = synthetic_raw()
    raw["t10k-labels-idx1-ubyte"] = idx_bytes(np.array([0, 1, 2, 3, 10]))
    monkeypatch.setitem(data._REGISTRY, "mnist", synthetic_spec(raw))
    write_files(tmp_path, raw)
    with pytest.raises(data.DataFileError, match="label 10 outside 0..9") as info:
        data.load("mnist", data_dir=tmp_path)
    assert "t10k-labels-idx1-ubyte.gz" in str(info.value)


def test_wrong_example_count(tmp_path, monkeypatch):
    raw = synthetic_raw()
    monkeypatch.setitem(data._REGISTRY, "mnist", synthetic_spec(raw, n_test=N_TEST + 1))
    write_files(tmp_path, raw)
    with pytest.raises(data.DataFileError, match=f"{N_TEST} examples, expected {N_TEST + 1}"):
        data.load("mnist", data_dir=tmp_path)


def test_raw_files_without_a_known_sha_are_unverified_and_wrong_ones_rejected(
    tmp_path, monkeypatch
):
    """A decompressed file is verified by the sha256 of the decompressed IDX file. Where that is
    not known, it loads with verified=False and its sha256; where it is known (the four MNIST
    files), a different file is rejected, naming it."""
    raw = synthetic_raw()
    spec = synthetic_spec(raw)
    real = data._REGISTRY["mnist"]
    assert real.train_images.raw_sha256 and real.train_labels.raw_sha256
    unknown = dataclasses.replace(
        spec,
        train_images=dataclasses.replace(real.train_images, raw_sha256=None),
        train_labels=dataclasses.replace(real.train_labels, raw_sha256=None),
    )
    monkeypatch.setitem(data._REGISTRY, "mnist", unknown)
    write_files(tmp_path / "raw_files", raw, compress=False)
    prov = data.load("mnist", data_dir=tmp_path / "raw_files").provenance
    files = {f["file"]: f for f in prov["files"]}
    assert prov["verified"] is False
    assert files["train-images-idx3-ubyte"]["verified"] is False
    assert files["train-images-idx3-ubyte"]["checked_against"] is None
    sha = hashlib.sha256(raw["train-images-idx3-ubyte"]).hexdigest()
    assert files["train-images-idx3-ubyte"]["sha256"] == sha
    assert files["t10k-images-idx3-ubyte"]["verified"] is True
    # With the real decompressed sha256, the synthetic train file is not MNIST's.
    known = dataclasses.replace(
        spec, train_images=real.train_images, train_labels=real.train_labels
    )
    monkeypatch.setitem(data._REGISTRY, "mnist", known)
    with pytest.raises(data.DataFileError, match="train-images-idx3-ubyte"):
        data.load("mnist", data_dir=tmp_path / "raw_files")
    # A gzipped train file must match the published gz checksum.
    write_files(tmp_path / "gz_files", raw, compress=True)
    with pytest.raises(data.DataFileError, match="train-images-idx3-ubyte.gz"):
        data.load("mnist", data_dir=tmp_path / "gz_files")


# ---------------------------------------------------------------------------------------------
# Cache and download


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server over tmp_path/www; yields (root folder, base URL, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    log: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):  # noqa: N802 (http.server's naming)
            log.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", log
    server.shutdown()
    server.server_close()
    thread.join()


def test_download_falls_back_to_second_mirror_then_uses_cache(tmp_path, monkeypatch, http_server):
    root, base, log = http_server
    raw = synthetic_raw()
    write_files(root / "good", raw)
    mirrors = (f"{base}/missing/", f"{base}/good/")
    monkeypatch.setitem(data._REGISTRY, "mnist", synthetic_spec(raw, mirrors=mirrors))
    cache = tmp_path / "cache"
    assert not data.available("mnist", cache_dir=cache)
    with pytest.raises(data.DataUnavailableError, match="never downloads"):
        data.load("mnist", cache_dir=cache, source="cache")
    assert log == []
    ds = data.load("mnist", cache_dir=cache)
    assert (ds.n_train, ds.n_test) == (N_TRAIN, N_TEST)
    names = [stem + ".gz" for stem in raw]
    assert log == [f"/{m}/{n}" for n in names for m in ("missing", "good")]
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(names)
    assert ds.provenance["source"] == "cache" and ds.provenance["verified"] is True
    assert data.available("mnist", cache_dir=cache)
    log.clear()
    again = data.load("mnist", cache_dir=cache)
    assert log == []
    assert again.provenance == ds.provenance
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    # A cached file gone missing is fetched again, alone.
    (cache / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    data.load("mnist", cache_dir=cache, source="download")
    assert log == ["/missing/t10k-labels-idx1-ubyte.gz", "/good/t10k-labels-idx1-ubyte.gz"]


def test_download_with_wrong_checksum_is_rejected(tmp_path, monkeypatch, http_server):
    root, base, log = http_server
    raw = synthetic_raw()
    write_files(root / "good", raw)
    spec = synthetic_spec(raw, mirrors=(f"{base}/good/",))
    bad = dataclasses.replace(spec.train_images, gz_hashes=("sha256:" + "0" * 64,))
    monkeypatch.setitem(data._REGISTRY, "mnist", dataclasses.replace(spec, train_images=bad))
    cache = tmp_path / "cache"
    with pytest.raises(data.DataUnavailableError, match="checksum mismatch") as info:
        data.load("mnist", cache_dir=cache)
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert log == ["/good/train-images-idx3-ubyte.gz"]
    assert [p for p in cache.rglob("*") if p.is_file()] == []
    assert not (cache / "mnist").exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_offline_fails_fast_with_helpful_message(tmp_path, monkeypatch, name):
    port = _closed_port()
    mirrors = [f"http://127.0.0.1:{port}/a/", f"http://127.0.0.1:{port}/b/"]
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "cache"))
    spec = data._REGISTRY[name]
    # Pretend the Debian folder is absent.
    monkeypatch.setitem(data._REGISTRY, name, dataclasses.replace(spec, system_dirs=()))
    start = time.perf_counter()
    with pytest.raises(data.DataUnavailableError) as info:
        data.load(name, mirrors=mirrors)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "data_dir" in message and "mnist10k" in message
    assert str(tmp_path / "cache" / name) in message
    for file in spec.files:
        assert file.filename in message
    assert not (tmp_path / "cache" / name).exists()


def test_silent_mirror_times_out_quickly(tmp_path):
    """A host that never answers the connection (a listener with a full backlog: the kernel
    drops further SYNs, as a firewall would) costs one connect timeout, then is skipped."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            time.sleep(0.05)
            start = time.perf_counter()
            with pytest.raises(data.DataUnavailableError, match="mnist10k") as info:
                data.load(
                    "mnist",
                    cache_dir=tmp_path,
                    mirrors=[f"http://127.0.0.1:{port}/a/", f"http://127.0.0.1:{port}/b/"],
                    connect_timeout=0.5,
                )
            seconds = time.perf_counter() - start
        finally:
            for filler in fillers:
                filler.close()
    assert seconds < 3, seconds
    assert f"127.0.0.1:{port}" in str(info.value)


def test_cache_folder_honours_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "env"))
    assert data.cache_folder("mnist") == tmp_path / "env" / "mnist"
    assert data.cache_folder("mnist", tmp_path / "arg") == tmp_path / "arg" / "mnist"
    monkeypatch.delenv(data.CACHE_ENV_VAR)
    assert data.cache_folder("mnist") == Path.home() / ".cache" / "keskar_repro" / "mnist"
    assert data.available("mnist10k")


# ---------------------------------------------------------------------------------------------
# tensorflow-datasets (optional)


def test_tfds_source_with_mock_data(monkeypatch):
    tfds = pytest.importorskip(
        "tensorflow_datasets", reason="tensorflow-datasets not installed (extra 'tfds')"
    )
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    with tfds.testing.mock_data(num_examples=7):
        ds = data.load("fashion_mnist", source="tfds")
    assert ds.x_train.shape == (7, 28, 28) and ds.x_test.shape == (7, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
    assert ds.y_train.min() >= 0 and ds.y_train.max() <= 9
    prov = ds.provenance
    assert prov["source"] == "tfds" and prov["verified"] is False
    assert prov["location"].startswith("tfds:fashion_mnist:")
    assert json.loads(json.dumps(prov)) == prov
    assert len(prov["arrays_sha256"]["x_train"]) == 64


SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"full MNIST not present at {SHARED_MNIST}")
def test_full_mnist_from_a_local_folder_is_verified():
    """The four original MNIST files (the project's shared copy, byte-identical to the published
    ones): every file verified by its checksums, the official shapes and class counts."""
    from keskar_repro.data import load

    d = load("mnist", data_dir=SHARED_MNIST)
    assert d.provenance["location"] == str(SHARED_MNIST)
    assert d.provenance["verified"] and all(f["verified"] for f in d.provenance["files"])
    assert d.x_train.shape == (60000, 28, 28) and d.x_test.shape == (10000, 28, 28)
    assert d.x_train.dtype == np.uint8
    counts = np.bincount(d.y_train, minlength=10).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(d.y_test, minlength=10).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]  # fmt: skip


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"full MNIST not present at {SHARED_MNIST}")
def test_an_uncompressed_mnist_train_file_is_verified_by_its_decompressed_sha(tmp_path):
    import gzip
    import shutil

    from keskar_repro.data import load

    for f in SHARED_MNIST.glob("*.gz"):
        shutil.copy(f, tmp_path / f.name)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(gzip.decompress(labels.read_bytes()))
    labels.unlink()
    prov = load("mnist", data_dir=tmp_path).provenance
    files = {f["file"]: f for f in prov["files"]}
    assert prov["verified"] and files["train-labels-idx1-ubyte"]["verified"]
