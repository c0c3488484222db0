"""The hardware limit that benchmarks are measured against: jitted float32 matmul throughput."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp


def time_call(fn, *args, repeats: int = 5) -> list[float]:
    """Wall seconds of `repeats` calls of `fn(*args)` (after one warm-up), each synchronised."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return times


def matmul_flops_per_second(n: int = 2048, repeats: int = 7) -> float:
    """Median float32 FLOP/s of a jitted n x n @ n x n product (2 n^3 FLOPs)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    return 2 * n**3 / statistics.median(time_call(matmul, a, b, repeats=repeats))


def device_description() -> str:
    device = jax.devices()[0]
    return f"{device.platform}:{device.device_kind} x{jax.device_count()}"


def run_row_in_subprocess(module: str, row: str, *args: str, env: dict | None = None) -> dict:
    """Run `python -m <module> --row <row> <args>` in a fresh process (so that its peak memory
    is the row's alone), with `env` added to the environment, and return the JSON object it
    prints last."""
    command = [sys.executable, "-m", module, "--row", row, *args]
    root = Path(__file__).resolve().parent.parent
    full_env = os.environ | (env or {})
    out = subprocess.run(command, cwd=root, capture_output=True, text=True, env=full_env)
    if out.returncode:
        raise RuntimeError(f"{module} --row {row!r} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
