"""The paper's experimental protocol for F1 (Keskar et al. 2017, Sections 2.2 and 3, Table 1).

Every constant of the protocol lives here, each with its source:

- batch sizes: small batch (SB) = 256, large batch (LB) = 10% of the training set;
- the SB and LB configurations of a seed (`sb_lb_configs`), which share the initial point;
- the sharpness measurement: epsilons 1e-3 and 5e-4, 10 iterations of L-BFGS-B, a random
  100-d subspace drawn from a key that depends only on the seed (`subspace_key`), so the SB
  and LB runs of a seed are measured in the same subspace;
- the parametric paths over alpha in [-1, 2];
- the epochs at which snapshots of a training run are kept (`snapshot_schedule`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import jax

from keskar_repro.errors import UserError
from keskar_repro.training.train import TrainConfig

PAPER_SB_BATCH = 256  # Section 2.2
PAPER_LB_FRACTION = 0.10  # Section 2.2: LB = 10% of the training data
PAPER_LB_SB_RATIO = 60000 * PAPER_LB_FRACTION / PAPER_SB_BATCH  # 6000 / 256 = 23.4
EPSILONS = (1e-3, 5e-4)  # Tables 3 and 4
SUBSPACE_DIM = 100  # Table 4: p of the random subspace
DEFAULT_SUBSPACE_SCALING = "gaussian"  # our choice: i.i.d. N(0, 1) entries (paper_notes.md)
SHARPNESS_MAXITER = 10  # Section 2.2.1: "10 iterations" of L-BFGS-B
SUBSPACE_KEY = 20170101  # our choice: A of seed s is drawn from fold_in(key(this), s)
ALPHA_RANGE = (-1.0, 2.0)  # Figures 3 and 7
SNAPSHOT_GRID = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)  # our choice (Figures 5 and 6)


def paper_batch_sizes(
    n_train: int, sb_batch: int | None = None, lb_batch: int | None = None
) -> tuple[int, int, str]:
    """(SB, LB, explanation) for `n_train` training images.

    LB = 10% of the training set; SB = LB / 23.4, the paper's ratio (256 on 60,000 images, 34 on
    mnist10k's 8,000, where the literal 256 would be only 3x smaller than LB). Either can be
    given explicitly; a batch larger than the training set is a UserError.
    """
    lb = lb_batch or round(PAPER_LB_FRACTION * n_train)
    sb = sb_batch or max(1, round(lb / PAPER_LB_SB_RATIO))
    note = f"SB batch {sb}, LB batch {lb} (LB/SB = {lb / sb:.1f}; the paper: 256 and 6000, 23.4)"
    if sb_batch is None and sb != PAPER_SB_BATCH:
        note += (
            f"; SB scaled from 256 to {sb} to keep the paper's LB/SB ratio on "
            f"{n_train} training images"
        )
    for name, b in (("--sb-batch", sb), ("--lb-batch", lb)):
        if b > n_train:
            raise UserError(f"{name}={b} exceeds the {n_train} training images; use a smaller one")
    return sb, lb, note


def sb_lb_configs(
    dataset: str,
    n_train: int,
    *,
    epochs: int = 100,
    hidden: tuple[int, ...] = (512,) * 5,
    sb_batch: int | None = None,
    lb_batch: int | None = None,
    init: str = TrainConfig.init,
) -> tuple[dict[str, TrainConfig], str]:
    """({"SB": config, "LB": config}, batch-size note) of the protocol, seed 0; every other
    field is TrainConfig's default (Adam, lr 1e-3, the authors' initialisation, ...)."""
    sb, lb, note = paper_batch_sizes(n_train, sb_batch, lb_batch)
    configs = {
        regime: TrainConfig(
            dataset=dataset, batch_size=batch, epochs=epochs, hidden=hidden, init=init
        )
        for regime, batch in (("SB", sb), ("LB", lb))
    }
    return configs, note


def with_seeds(config: TrainConfig, seeds: Iterable[int]) -> list[TrainConfig]:
    """`config` once per seed (the seed replaced)."""
    return [dataclasses.replace(config, seed=int(s)) for s in seeds]


def subspace_key(seed: int) -> jax.Array:
    """The key of the random subspace of every run with seed `seed` (SB and LB alike)."""
    return jax.random.fold_in(jax.random.key(SUBSPACE_KEY), int(seed))


def snapshot_schedule(epochs: int) -> list[int]:
    """Epochs at which training snapshots are kept: 0, 1, 2, 5, 10, 20, 50, ... up to `epochs`,
    and `epochs` itself (0 is the initial point)."""
    return sorted({e for e in SNAPSHOT_GRID if e <= epochs} | {epochs})
