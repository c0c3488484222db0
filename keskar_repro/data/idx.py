"""IDX files: reading, decompressing, checking the structure and the known checksums."""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from keskar_repro.data.specs import (
    _IMAGE_SHAPE,
    _IMAGES_MAGIC,
    _LABELS_MAGIC,
    _NUM_CLASSES,
    DataFileError,
    FileSpec,
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
