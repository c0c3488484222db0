"""Data parallelism (parallel.py) on one device: nothing is sharded. That 4 devices (and 2
processes x 2 devices) compute what one does, and really split the work, is tested in
tests/test_distributed.py, whose jobs run every configuration once."""

import os
import subprocess
import sys

ONE_DEVICE_PROGRAM = r"""
import jax, jax.numpy as jnp
from keskar_repro.devices import parallel
x = jnp.ones((6, 3))
assert len(jax.devices()) == 1, jax.devices()
assert parallel.device_count() == 1 and parallel.data_mesh() is None
assert parallel.shard_examples(x) is x
print("ok")
"""


def test_one_device_is_untouched():
    # In a subprocess on one CPU device: this process may see several (a forced device count in
    # XLA_FLAGS, or several accelerators), and JAX's device count is fixed at its start.
    env = dict(os.environ)
    flags = [
        flag
        for flag in env.pop("XLA_FLAGS", "").split()
        if not flag.startswith("--xla_force_host_platform_device_count")
    ]
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", ONE_DEVICE_PROGRAM],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "ok"
