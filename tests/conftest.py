"""Shared fixtures: small slices of the shipped MNIST-10k and a tiny MLP config."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from keskar_repro.train import TrainConfig


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
