"""keskar_repro.store.files: atomic writes, JSON reading, the cached-JSON store, the spec hash, the
inter-process lock and the environment record."""

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from importlib import metadata

import pytest

from keskar_repro.errors import CorruptFileError, UserError
from keskar_repro.store import files
from keskar_repro.store.files import (
    cached_json,
    environment,
    file_lock,
    host_cpu,
    published_mode,
    read_json,
    spec_hash,
    write_atomic,
    write_json,
)


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "new" / "folder" / "a.txt"  # missing folders are created
    write_atomic(target, "one")
    assert target.read_text() == "one"
    write_atomic(target, b"two\x00")
    assert target.read_bytes() == b"two\x00"
    assert os.listdir(target.parent) == ["a.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_written_files_get_the_umask_mode_not_the_temporary_0600(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "a.json", "{}")
        assert published_mode() == 0o666 & ~umask
        assert published_mode(directory=True) == 0o777 & ~umask
        assert os.umask(umask) == umask  # reading the mode left the umask as it was
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    write_json(target, {"b": 1, "a": [1, 2]})
    old = target.read_text()
    assert json.loads(old) == {"a": [1, 2], "b": 1} and old.index('"a"') < old.index('"b"')

    def killed(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", killed)
    with pytest.raises(OSError, match="disk full"):
        write_json(target, {"new": True})
    assert target.read_text() == old
    assert os.listdir(tmp_path) == ["a.json"]


def test_read_json_of_a_corrupt_file_names_it(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"x": [1, 2.5, null]}')
    assert read_json(good) == {"x": [1, 2.5, None]}
    for name, blob in (("half.json", b'{"x": [1, 2'), ("binary.json", b"\xff\xfe\x00")):
        bad = tmp_path / name
        bad.write_bytes(blob)
        with pytest.raises(CorruptFileError, match=re.escape(str(bad))) as err:
            read_json(bad)
        assert isinstance(err.value, UserError) and "delete it" in str(err.value)


def test_cached_json_computes_once_and_stores_spec_and_result(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"value": 0.25 * len(calls), "list": [1, 2]}

    spec = {"run": "abc", "epsilon": 1e-3}
    first = cached_json(tmp_path / "m", "sharpness", spec, compute)
    assert first == {"value": 0.25, "list": [1, 2]} and len(calls) == 1
    target = tmp_path / "m" / f"sharpness-{spec_hash(spec)}.json"
    assert json.loads(target.read_text()) == {"spec": spec, "result": first}
    assert os.listdir(tmp_path / "m") == [target.name]
    again = cached_json(tmp_path / "m", "sharpness", dict(reversed(spec.items())), compute)
    assert again == first and len(calls) == 1  # read back, not recomputed
    other = cached_json(tmp_path / "m", "sharpness", {**spec, "epsilon": 5e-4}, compute)
    assert other["value"] == 0.5 and len(calls) == 2
    other_kind = cached_json(tmp_path / "m", "path", spec, compute)
    assert other_kind["value"] == 0.75 and len(calls) == 3


def test_cached_json_names_a_corrupt_entry(tmp_path):
    spec = {"k": 1}
    target = tmp_path / f"kind-{spec_hash(spec)}.json"
    for blob in ('{"spec": {"k": 1}, "res', '{"spec": {"k": 1}}', "[1, 2]"):
        target.write_text(blob)
        with pytest.raises(CorruptFileError, match=re.escape(str(target))):
            cached_json(tmp_path, "kind", spec, lambda: pytest.fail("recomputed"))
        assert target.read_text() == blob  # left for the user to delete


def test_spec_hash_is_16_hex_digits_independent_of_key_order():
    h = spec_hash({"a": 1, "b": [2, 3]})
    assert h == "efbd0040190fb087"  # sha256 of '{"a":1,"b":[2,3]}': existing caches keep it
    assert spec_hash({"b": [2, 3], "a": 1}) == h
    assert spec_hash({"a": {"y": 1, "x": 2}}) == spec_hash({"a": {"x": 2, "y": 1}})
    assert spec_hash({"a": 1, "b": [3, 2]}) != h
    assert re.fullmatch("[0-9a-f]{16}", spec_hash([1.5, None, "x"]))


TRY_LOCK = textwrap.dedent(
    """
    import sys
    from filelock import FileLock, Timeout
    try:
        FileLock(sys.argv[1]).acquire(timeout=0)
    except Timeout:
        sys.exit(3)
    """
)
HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from filelock import FileLock
    with FileLock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(0.5)
    """
)


def test_file_lock_excludes_another_process(tmp_path):
    path = tmp_path / "sub" / "x.lock"

    def other_process_gets_it() -> bool:
        proc = subprocess.run([sys.executable, "-c", TRY_LOCK, str(path)], timeout=30)
        assert proc.returncode in (0, 3)
        return proc.returncode == 0

    with file_lock(path, "testing"):
        assert not other_process_gets_it()
    assert other_process_gets_it()  # released at the end of the block


def test_file_lock_says_once_that_it_waits_and_then_takes_it(tmp_path, capsys):
    path = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        t0 = time.time()
        with file_lock(path, "the sharpness of run x", poll=0.02):
            waited = time.time() - t0  # until the holder let go
    finally:
        holder.wait(timeout=30)
    assert 0.1 < waited < 5
    err = capsys.readouterr().err
    assert err == f"waiting for another process to finish the sharpness of run x ({path})\n"


def test_environment_records_versions_and_the_device():
    import jax

    env = environment()
    assert env["versions"]["jax"] == jax.__version__
    assert env["versions"]["numpy"] == metadata.version("numpy")
    assert env["versions"]["flax"] == metadata.version("flax")
    assert env["device"]["platform"] == jax.devices()[0].platform
    assert env["device"]["count"] == jax.device_count() >= 1
    assert re.fullmatch(r"3\.\d+\.\d+.*", env["python"])
    assert env["xla_flags"] == os.environ.get("XLA_FLAGS")
    assert set(env["host_cpu"]) == {"model", "isa"}
    json.dumps(env)  # goes into every results JSON as it is


def test_host_cpu_names_the_model_and_the_instruction_sets_that_change_xla_code():
    cpuinfo = ("processor\t: 0\nmodel name\t: AMD EPYC 9B14\n"
               "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw\n\n"
               "processor\t: 1\nmodel name\t: AMD EPYC 9B14\n"
               "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw\n")  # fmt: skip
    assert host_cpu(cpuinfo) == {
        "model": "AMD EPYC 9B14", "isa": ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw"]
    }  # fmt: skip
    assert host_cpu("model name\t: Old\nflags\t: fpu sse4_2 avx\n")["isa"] == ["sse4_2", "avx"]
