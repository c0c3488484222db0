"""Shared fixtures: small slices of the shipped MNIST-10k and a tiny MLP config.

The suite compiles the same small programs many times (one loss function per run, the same
shapes), in this process and in the scripts it starts; JAX's persistent compilation cache, in
a folder of this session only (inherited by subprocesses through the environment), compiles
each once. It changes no result, only time.

The suite also compiles at LLVM's lowest optimisation level (`--xla_backend_optimization_level=0`
appended to XLA_FLAGS, inherited by the scripts it starts), unless XLA_FLAGS already names a
level: its programs are tiny, so compiling them is most of their cost (a quarter of the
suite's time). The level can change float rounding (LLVM fuses multiply-adds and vectorises
loops only when optimising: F1 trained 2 epochs on mnist10k ends at 0.0744 nats, not 0.0735),
not the arithmetic a program is written to do; every test compares programs compiled at one
level, or to tolerances. The suite passes at the default level too:
`XLA_FLAGS=--xla_backend_optimization_level=3 pytest -n auto --dist loadfile` (3 is
XLA's default; at 1 and 2 one solver test's float32 rounding ends L-BFGS-B on another path).
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


# The suite's files that take longest (seconds of test time on the 2-core CPU, at LLVM -O0),
# longest first. With `--dist loadfile` xdist hands whole files to its workers in collection
# order when `--no-loadscope-reorder` is given (pyproject's addopts); starting the longest
# files first leaves only short files for the end, so no worker waits long for the other.
LONGEST_FIRST = (
    "test_figure_scripts.py",  # 123 (one make_all over every script)
    "test_distributed.py",  # 58
    "test_train.py",  # 52
    "test_docs.py",  # 46
    "test_docs_site.py",  # 39
    "test_objective.py",  # 37
    "test_sharpness.py",  # 33
    "test_runs.py",  # 31
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept within
