"""Start a multi-process job on this machine: P copies of one Python program, each a process of
JAX's distributed runtime (keskar_repro.devices.distributed), coordinated on 127.0.0.1.

    python -m keskar_repro.devices.launch --processes 2 -- experiments/fig_sharpness.py --preset
    quick python -m keskar_repro.devices.launch --processes 2 --devices-per-process 2 -- -c "import
    ..."

Everything after `--` is the command line of `python` in every process. Each process gets
KESKAR_COORDINATOR (127.0.0.1 and a free port), KESKAR_NUM_PROCESSES and KESKAR_PROCESS_ID;
with --devices-per-process N also JAX_PLATFORMS=cpu and XLA's forced host device count N, so
P x N CPU devices can stand in for P hosts (the test suite does this). Process 0 writes to this
terminal; process i > 0 writes to <log-dir>/process-<i>.log (a temporary folder unless
--log-dir is given), whose tail is printed if that process fails. When any process fails, or
--timeout passes, the others are stopped (a process left alone would wait in a collective); every
process that failed by then (within SETTLE_S of the first) is reported, and the exit status is
the lowest-numbered failed process's (124 on a timeout). On several hosts, do not use this:
start one process per host with the three variables set (README, "Several hosts").
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from keskar_repro.devices.distributed import ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID

TIMEOUT_STATUS = 124
GRACE_S = 10.0  # how long a stopped process gets before it is killed
SETTLE_S = 1.0  # after a failure, how long to wait for others failing at the same time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def forced_devices_env(devices: int, base: dict | None = None) -> dict[str, str]:
    """`base` (default: this environment) with JAX on `devices` forced CPU devices."""
    env = dict(os.environ if base is None else base)
    flags = [
        f
        for f in env.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    env["JAX_PLATFORMS"] = "cpu"
    return env


def process_env(
    pid: int, processes: int, port: int, devices_per_process: int | None, base: dict | None = None
) -> dict[str, str]:
    """The environment of process `pid` of `processes` (module docstring)."""
    env = dict(os.environ if base is None else base)
    if devices_per_process is not None:
        env = forced_devices_env(devices_per_process, env)
    env.update({
        ENV_COORDINATOR: f"127.0.0.1:{port}",
        ENV_NUM_PROCESSES: str(processes),
        ENV_PROCESS_ID: str(pid),
    })  # fmt: skip
    return env


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def launch(
    command: Sequence[str],
    processes: int,
    *,
    devices_per_process: int | None = None,
    timeout: float | None = None,
    log_dir: str | os.PathLike | None = None,
    env: dict | None = None,
    stdout=None,
) -> int:
    """Run `python *command` as `processes` processes of one job; the exit status (module
    docstring). `stdout`, a file, receives process 0's output and errors (default: this
    process's stdout and stderr)."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if devices_per_process is not None and devices_per_process < 1:
        raise ValueError(f"devices_per_process must be >= 1, got {devices_per_process}")
    logs = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="keskar-launch-"))
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    procs, files = [], []
    try:
        for pid in range(processes):
            out = stdout if pid == 0 else open(logs / f"process-{pid}.log", "w")  # noqa: SIM115
            if pid:
                files.append(out)
            procs.append(
                subprocess.Popen(
                    [sys.executable, *command],
                    env=process_env(pid, processes, port, devices_per_process, env),
                    stdout=out,
                    stderr=subprocess.STDOUT if pid or stdout is not None else None,
                )
            )
        return _wait(procs, logs, timeout)
    finally:
        _stop(procs)
        for f in files:
            f.close()


def _wait(procs: list[subprocess.Popen], logs: Path, timeout: float | None) -> int:
    """Wait for every process; on a failure, report every process failed within SETTLE_S of it
    and return the lowest-numbered one's status; on the timeout, say so and return 124."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        codes = [p.poll() for p in procs]
        if any(c not in (None, 0) for c in codes):
            time.sleep(SETTLE_S)  # processes failing together (a shared cause) are all reported
            failed = [(i, p.poll()) for i, p in enumerate(procs) if p.poll() not in (None, 0)]
            for pid, code in failed:
                _report(pid, f"exited with status {code}", logs)
            return failed[0][1]
        if all(c == 0 for c in codes):
            return 0
        if deadline is not None and time.monotonic() > deadline:
            print(f"launch: timeout after {timeout:g} s; stopping every process", file=sys.stderr)
            return TIMEOUT_STATUS
        time.sleep(0.2)


def _report(pid: int, what: str, logs: Path) -> None:
    print(f"launch: process {pid} {what}", file=sys.stderr)
    log = logs / f"process-{pid}.log"
    if pid and log.is_file():
        tail = log.read_text(errors="replace").splitlines()[-30:]
        print("\n".join(f"[process {pid}] {line}" for line in tail), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m keskar_repro.devices.launch",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--processes", type=int, required=True, help="P, processes in the job")
    p.add_argument(
        "--devices-per-process",
        type=int,
        default=None,
        help="force N CPU devices in each process (for tests on one machine)",
    )
    p.add_argument("--timeout", type=float, default=None, help="stop every process after S s")
    p.add_argument("--log-dir", default=None, help="folder for process i > 0's output")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then python's arguments")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the program after --, e.g. -- experiments/fig_sharpness.py --preset quick")
    if args.processes < 1 or (args.devices_per_process or 1) < 1:
        p.error("--processes and --devices-per-process must be >= 1")
    return launch(
        command,
        args.processes,
        devices_per_process=args.devices_per_process,
        timeout=args.timeout,
        log_dir=args.log_dir,
    )


if __name__ == "__main__":
    sys.exit(main())
