"""Shared fixtures: small slices of the shipped MNIST-10k and a tiny MLP config.

The suite compiles the same small programs many times (one loss function per run, the same
shapes), in this process and in the scripts it starts; JAX's persistent compilation cache, in
a folder of this session only (inherited by subprocesses through the environment), compiles
each once. It changes no result, only time.

The suite also compiles at LLVM's lowest optimisation level (`--xla_backend_optimization_level=0`
appended to XLA_FLAGS, inherited by the scripts it starts), unless XLA_FLAGS already names a
level: its programs are tiny, so compiling them is most of their cost, and the level changes
how fast a program runs, not what it computes (XLA's CPU code keeps IEEE float semantics at
every level). This takes about a quarter off the suite's time; run it with
`XLA_FLAGS=--xla_backend_optimization_level=2` to check at the default level.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="keskar-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    _flags = os.environ.get("XLA_FLAGS", "").split()
    os.environ["XLA_FLAGS"] = " ".join([*_flags, "--xla_backend_optimization_level=0"])

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keskar_repro.training.train import TrainConfig  # noqa: E402


@dataclasses.dataclass(frozen=True)
class SmallData:
    """A Dataset-like slice of mnist10k (same fields as keskar_repro.data.Dataset)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    provenance: dict


@pytest.fixture(scope="session")
def mnist10k():
    from keskar_repro.data import load

    return load("mnist10k")


@pytest.fixture(scope="session")
def small_data(mnist10k) -> SmallData:
    """1,000 training and 500 test images of mnist10k."""
    return SmallData(
        name="mnist10k",
        x_train=mnist10k.x_train[:1000],
        y_train=mnist10k.y_train[:1000],
        x_test=mnist10k.x_test[:500],
        y_test=mnist10k.y_test[:500],
        provenance={**mnist10k.provenance, "subset": "first 1000 train / 500 test"},
    )


@pytest.fixture
def tiny_config() -> TrainConfig:
    """A two-layer, 32-wide MLP trained for 2 epochs at batch 100: compiles and runs in seconds."""
    return TrainConfig(dataset="mnist10k", batch_size=100, epochs=2, hidden=(32, 32))


def tiny_runs_job(root: str, out: str) -> dict:
    """Get (train or load) seed 0 of a tiny config in `root` and write a fingerprint of its
    variables to `out`; used by two processes at once in tests/test_runs.py."""
    import json

    import jax

    from keskar_repro.data import load
    from keskar_repro.store.runs import get_or_train

    data = load("mnist10k")
    small = SmallData("mnist10k", data.x_train[:1000], data.y_train[:1000],
                      data.x_test[:500], data.y_test[:500], data.provenance)  # fmt: skip
    config = TrainConfig(dataset="mnist10k", batch_size=100, epochs=3, hidden=(32, 32))
    (run,) = get_or_train([config], small, root=root, progress=False, checkpoint_seconds=0)
    sums = [
        float(np.asarray(leaf, np.float64).sum()) for leaf in jax.tree_util.tree_leaves(run.params)
    ]
    fingerprint = {"sums": sums, "history": run.history["train_loss"]}
    with open(out, "w") as handle:
        json.dump(fingerprint, handle)
    return fingerprint


@pytest.fixture
def x64():
    """Float64 on for one test (exact-answer checks of the measurements)."""
    import jax

    with jax.enable_x64(True):
        yield
