"""Generic file writing: atomic writes, cached JSON results, locks, and the environment record.

Nothing here knows about runs or experiments. Every write goes through a temporary file in the
target's folder and a rename, so a killed process never leaves a half-written file behind, and
two processes writing the same file leave one complete copy. What is written gets the
permissions a plain `open()` would give it (0666 or 0777 less the umask, `published_mode`), not
the owner-only 0600 / 0700 of a temporary file, so a results folder can be shared. `file_lock`
(the `filelock` package: an OS-level lock released when its process dies) serialises work that
two processes sharing a folder must not do twice at once.

In a multi-process job (keskar_repro.devices.distributed) only the primary process writes and locks;
the others compute the same values, skip the write, and take the primary's answer wherever a
decision depends on what is on disk (`cached_json`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from keskar_repro.devices.distributed import agree, is_primary
from keskar_repro.errors import CorruptFileError


def published_mode(*, directory: bool = False) -> int:
    """The mode `open()` (0o666) or `mkdir()` (0o777) would give a new file or folder under
    the current umask; temporary files are created 0o600 / 0o700 and get this before the
    rename that publishes them."""
    umask = os.umask(0o022)  # read the umask (POSIX has no read-only call), then restore it
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def write_atomic(path: str | os.PathLike, blob: bytes | str) -> None:
    """Write `blob` to `path` through a temporary file and a rename: all or nothing. Only the
    primary process of a multi-process job writes; on the others this does nothing."""
    if not is_primary():
        return
    path = Path(path)
    if isinstance(blob, str):
        blob = blob.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), published_mode())
            handle.write(blob)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """`obj` as indented, key-sorted JSON, written atomically."""
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True))


def read_json(path: str | os.PathLike) -> Any:
    """The JSON in `path`; a `CorruptFileError` naming the file if it does not parse."""
    try:
        return json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"{path} is not valid JSON ({err}); delete it") from err


def spec_hash(spec: Any) -> str:
    """First 16 hex digits of the sha256 of `spec`'s canonical JSON."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_json(folder: str | os.PathLike, kind: str, spec: dict, compute: Callable[[], Any]):
    """`compute()`'s JSON-ready result, computed once and kept as
    <folder>/<kind>-<spec_hash(spec)>.json = {"spec", "result"}.

    A present file is read back (a corrupt one is a `CorruptFileError` naming it); a missing
    one is computed and written atomically, so an interrupted sweep resumes where it stopped
    and two processes computing the same entry leave one complete file.
    """
    target = Path(folder) / f"{kind}-{spec_hash(spec)}.json"
    if agree(target.is_file()):  # every process computes, or every process reads
        stored = read_json(target)
        if not isinstance(stored, dict) or "result" not in stored:
            raise CorruptFileError(f"{target} has no 'result'; delete it to recompute")
        return stored["result"]
    result = compute()
    write_atomic(target, json.dumps({"spec": spec, "result": result}, indent=1))
    return result


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, what: str, *, poll: float = 1.0) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) while the block runs; if another
    process holds it, say so once on stderr (naming `what`) and wait for it. In a multi-process
    job only the primary process locks (the others follow its decisions)."""
    from filelock import FileLock, Timeout

    if not is_primary():
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for another process to finish {what} ({path})", file=sys.stderr)
        lock.acquire(poll_interval=poll)
    try:
        yield
    finally:
        lock.release()


PACKAGES = ("keskar-repro", "jax", "jaxlib", "flax", "optax", "numpy", "scipy")


# The host CPU's instruction-set extensions that change XLA:CPU's code, hence float rounding.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
             "avx512_vnni", "amx_bf16")  # fmt: skip


def host_cpu(cpuinfo: str | None = None) -> dict[str, Any]:
    """{"model", "isa"}: the host CPU's model name and which of `ISA_FLAGS` it has, from
    /proc/cpuinfo (Linux; elsewhere the model is `platform.processor()` and "isa" None).

    Two machines with the same packages can round differently when XLA compiles for other
    instruction sets, and a difference amplified by 100 epochs of training is then another
    trajectory; recording the CPU tells such a difference from a bug."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {"model": platform.processor() or None, "isa": None}
    fields = dict(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in cpuinfo.splitlines())
        if k.strip() in ("model name", "flags")
    )  # fmt: skip
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name"), "isa": [f for f in ISA_FLAGS if f in flags]}


def environment() -> dict[str, Any]:
    """Versions of the packages that shape a result, the device that computed it, the host CPU
    (`host_cpu`) and XLA_FLAGS (None when unset)."""
    import jax

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    device = jax.devices()[0]
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": {
            "platform": device.platform,
            "kind": device.device_kind,
            "count": jax.device_count(),
            "processes": jax.process_count(),
        },
        "host_cpu": host_cpu(),
        "xla_flags": os.environ.get("XLA_FLAGS"),
    }
