"""Multi-process jobs: JAX's distributed runtime started from the environment, one writer, and
decisions every process takes alike.

A job of P processes (one per host, or several on one machine) runs the same program in every
process. After `initialize_from_env()`, `jax.devices()` lists the devices of all processes, so
keskar_repro.devices.parallel's data mesh spans them all, and every compiled program (training step,
objective, path evaluation) is one SPMD program over the whole mesh: each process must run the
same sequence of them. Host-side work between them (SciPy's L-BFGS-B in the sharpness
maximisation, the training loop's bookkeeping) runs on every process on identical values: the
arrays it reads are replicated, so each process fetches the same bits and takes the same steps.
That costs nothing (the solver's work is tiny next to one objective evaluation) and needs no
broadcast after every step, which a process-0-only solver would.

Files are written once: `is_primary()` is True only on process 0, and `files.write_atomic`,
`files.file_lock` and the run store write (and lock) on the primary process only. Where a
process decides from what is on disk (is this run saved? is this measurement cached?), every
process takes the primary's answer (`agree`), which also waits for the primary to have finished
its earlier writes, so on a shared file system every process then reads the same files.

The environment variables read (all three, or none):

    KESKAR_COORDINATOR     host:port of process 0's coordinator service
    KESKAR_NUM_PROCESSES   P
    KESKAR_PROCESS_ID      this process's index, 0 .. P - 1

or KESKAR_DISTRIBUTED=auto, which calls `jax.distributed.initialize()` without arguments so
that JAX detects the cluster (SLURM, Open MPI, Cloud TPU). `python -m keskar_repro.devices.launch`
sets the first three for P processes on this machine. On CPUs the collectives go through gloo.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from keskar_repro.errors import UserError

ENV_COORDINATOR = "KESKAR_COORDINATOR"
ENV_NUM_PROCESSES = "KESKAR_NUM_PROCESSES"
ENV_PROCESS_ID = "KESKAR_PROCESS_ID"
ENV_AUTO = "KESKAR_DISTRIBUTED"
INIT_TIMEOUT_S = 120  # how long a process waits for the others to join


def _environment() -> dict[str, str] | None:
    """The three KESKAR_* settings, None when none is set; a UserError when only some are."""
    names = (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID)
    values = {name: os.environ.get(name) for name in names}
    given = [name for name, value in values.items() if value]
    if not given:
        return None
    if len(given) < len(names):
        missing = sorted(set(names) - set(given))
        raise UserError(f"{', '.join(given)} set but not {', '.join(missing)}: set all three")
    return values


def initialize_from_env() -> bool:
    """Start JAX's distributed runtime if the environment asks for it (module docstring);
    True if this is now a multi-process job. Call it before anything else uses JAX. Without
    the variables it does nothing (a one-process job)."""
    import jax

    settings = _environment()
    auto = os.environ.get(ENV_AUTO, "") == "auto"
    if settings is None and not auto:
        return False
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices only
    if settings is None:
        jax.distributed.initialize(initialization_timeout=INIT_TIMEOUT_S)
    else:
        num, pid = int(settings[ENV_NUM_PROCESSES]), int(settings[ENV_PROCESS_ID])
        if not 0 <= pid < num:
            raise UserError(f"{ENV_PROCESS_ID}={pid} must be in 0 .. {ENV_NUM_PROCESSES} - 1")
        jax.distributed.initialize(
            coordinator_address=settings[ENV_COORDINATOR],
            num_processes=num,
            process_id=pid,
            initialization_timeout=INIT_TIMEOUT_S,
        )
    return jax.process_count() > 1


def _jax_distributed():
    """The jax module if a multi-process runtime is running, else None (nothing imported: a
    replot, which needs no JAX, stays without it)."""
    jax = sys.modules.get("jax")
    if jax is None or not jax.distributed.is_initialized():
        return None
    return jax


def process_index() -> int:
    """This process's index in the job (0 when it is the only one)."""
    jax = _jax_distributed()
    return 0 if jax is None else jax.process_index()


def is_primary() -> bool:
    """True on the process that writes files: process 0 (or the only process)."""
    return process_index() == 0


def agree(value: Any) -> Any:
    """The primary process's `value` (a bool, an int, or a NumPy array of one shape on every
    process), on every process. In a one-process job: `value` itself. Collective: every process
    must call it, in the same order; returns once the primary has reached it."""
    jax = _jax_distributed()
    if jax is None or jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    array = np.asarray(value)
    sent = array.astype(np.int32) if array.dtype == bool else array
    out = np.asarray(multihost_utils.broadcast_one_to_all(sent))
    if isinstance(value, bool | int):
        return type(value)(out)
    return out.astype(array.dtype)


def barrier(name: str) -> None:
    """Wait until every process has reached the barrier called `name` (a no-op alone)."""
    jax = _jax_distributed()
    if jax is not None and jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
