"""keskar_repro.training.protocol: the paper's batch sizes, the SB/LB configurations of a seed, the
subspace key of a seed, the snapshot epochs and the protocol's constants."""

import dataclasses

import jax
import numpy as np
import pytest

from keskar_repro.errors import UserError
from keskar_repro.training import protocol
from keskar_repro.training.protocol import (
    paper_batch_sizes,
    sb_lb_configs,
    snapshot_schedule,
    subspace_key,
    with_seeds,
)
from keskar_repro.training.train import TrainConfig


def test_paper_batch_sizes_keep_the_paper_ratio():
    assert paper_batch_sizes(60000)[:2] == (256, 6000)
    sb, lb, note = paper_batch_sizes(8000)
    assert (sb, lb) == (34, 800) and "scaled from 256 to 34" in note
    assert paper_batch_sizes(8000, 100, 500)[:2] == (100, 500)
    with pytest.raises(UserError, match="--lb-batch=9000 exceeds"):
        paper_batch_sizes(8000, None, 9000)


def test_snapshot_schedule():
    assert snapshot_schedule(100) == [0, 1, 2, 5, 10, 20, 50, 100]
    assert snapshot_schedule(15) == [0, 1, 2, 5, 10, 15]
    assert snapshot_schedule(1) == [0, 1]


def test_sb_lb_configs_of_full_mnist_differ_only_in_batch():
    configs, note = sb_lb_configs("mnist", 60000)
    assert sorted(configs) == ["LB", "SB"]
    sb, lb = configs["SB"], configs["LB"]
    assert (sb.batch_size, lb.batch_size) == (256, 6000)
    assert (sb.epochs, sb.seed, sb.dataset, sb.hidden) == (100, 0, "mnist", (512,) * 5)
    assert dataclasses.replace(sb, batch_size=6000) == lb  # the same initial point and training
    assert note.startswith("SB batch 256, LB batch 6000") and "scaled" not in note
    small, _ = sb_lb_configs("mnist10k", 8000, epochs=3, hidden=(16,), lb_batch=1000)
    assert (small["SB"].batch_size, small["LB"].batch_size) == (43, 1000)  # 1000 / 23.4
    assert small["SB"].epochs == 3 and small["LB"].hidden == (16,)


def test_with_seeds_replaces_only_the_seed():
    config = TrainConfig(batch_size=100, epochs=7, seed=5, learning_rate=0.01, hidden=(8,))
    configs = with_seeds(config, np.arange(3, 6))
    assert [c.seed for c in configs] == [3, 4, 5]
    assert all(type(c.seed) is int for c in configs)  # a numpy integer would change the hash
    assert all(dataclasses.replace(c, seed=5) == config for c in configs)
    assert with_seeds(config, []) == []


def test_subspace_key_depends_only_on_the_seed():
    data = {s: jax.random.key_data(subspace_key(s)).tolist() for s in (0, 1, 2)}
    assert jax.random.key_data(subspace_key(1)).tolist() == data[1]
    assert jax.random.key_data(subspace_key(np.int64(1))).tolist() == data[1]
    assert len({tuple(v) for v in data.values()}) == 3
    expected = jax.random.fold_in(jax.random.key(protocol.SUBSPACE_KEY), 2)
    assert data[2] == jax.random.key_data(expected).tolist()


def test_the_papers_constants():
    assert protocol.EPSILONS == (1e-3, 5e-4)
    assert protocol.SUBSPACE_DIM == 100
    assert protocol.SHARPNESS_MAXITER == 10
    assert protocol.ALPHA_RANGE == (-1.0, 2.0)
    assert (protocol.PAPER_SB_BATCH, protocol.PAPER_LB_FRACTION) == (256, 0.10)
    assert protocol.PAPER_LB_SB_RATIO == pytest.approx(23.4375)
