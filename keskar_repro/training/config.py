"""A training run's configuration (`TrainConfig`, hashed into its run directory), its state,
and the record of a trained run (`TrainedRun`); keskar_repro.training.train trains them."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np
import optax

from keskar_repro.training.bn_policies import BN_POLICIES, DEFAULT_CHUNK_SIZE
from keskar_repro.training.models import KERNEL_INITS, MLP

STOPPING_RULES = ("epochs", "patience")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained run (its hash names the run on disk)."""

    dataset: str = "mnist10k"  # name given to keskar_repro.data.load
    batch_size: int = 256  # examples per Adam step
    epochs: int = 100  # epochs to train ("epochs") or the cap ("patience")
    seed: int = 0  # initial point and data order
    learning_rate: float = 1e-3  # Adam step size (optax default)
    b1: float = 0.9  # Adam first-moment decay
    b2: float = 0.999  # Adam second-moment decay
    adam_eps: float = 1e-8  # Adam denominator epsilon
    hidden: tuple[int, ...] = (512,) * 5  # hidden widths (F1)
    init: str = "glorot_uniform"  # Dense kernel initialiser (models.KERNEL_INITS; the authors')
    bn_momentum: float = 0.99  # decay of BN running averages
    bn_epsilon: float = 1e-3  # added to BN variances
    stopping: str = "epochs"  # "epochs" or "patience"
    patience: int = 5  # epochs without improvement before stopping ("patience")
    min_rel_improvement: float = 1e-2  # relative drop of the train loss that counts as one
    eval_bn_policy: str = "batch"  # BN policy of the per-epoch history
    eval_chunk_size: int = DEFAULT_CHUNK_SIZE  # chunk of the "batch" policy
    # Start from another run's snapshot instead of the seed's initial point:
    # "<run directory name>@<epoch>" (fresh Adam state; the data order still comes from `seed`).
    warm_start: str = ""
    # Conservative training (paper App. E.2, Table 7): Adam iterations on each batch's proximal
    # sub-problem min_x f_B(x) + (prox_lambda / 2) ||x - x_k||^2; 0 = the plain Adam step.
    prox_steps: int = 0
    prox_lambda: float = 1e-3  # lambda of the proximal term (the paper's 1e-3)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        checks = {
            "batch_size": self.batch_size >= 1,
            "epochs": self.epochs >= 1,
            "learning_rate": self.learning_rate > 0 and np.isfinite(self.learning_rate),
            "hidden": len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden),
            "stopping": self.stopping in STOPPING_RULES,
            "patience": self.patience >= 1,
            "eval_bn_policy": self.eval_bn_policy in BN_POLICIES,
            "init": self.init in KERNEL_INITS,
            "eval_chunk_size": self.eval_chunk_size >= 1,
            "warm_start": not self.warm_start or _parse_warm_start(self.warm_start) is not None,
            "prox_steps": self.prox_steps >= 0,
            "prox_lambda": self.prox_lambda >= 0 and np.isfinite(self.prox_lambda),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r} is invalid")

    def model(self) -> MLP:
        return MLP(
            hidden=self.hidden,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            kernel_init=self.init,
        )

    def optimizer(self) -> optax.GradientTransformation:
        """Adam whose learning rate lives in the optimizer state (`inject_hyperparams`), so that
        runs with different learning rates share one compiled, vmapped program. The update is
        bit-identical to `optax.adam(learning_rate, b1, b2, eps)`."""
        adam = optax.inject_hyperparams(optax.adam, static_args=("b1", "b2", "eps", "eps_root"))
        return adam(learning_rate=self.learning_rate, b1=self.b1, b2=self.b2, eps=self.adam_eps)

    @property
    def warm_start_source(self) -> tuple[str, int] | None:
        """(run directory name, epoch) of the warm start, or None for the seed's initial point."""
        return _parse_warm_start(self.warm_start) if self.warm_start else None

    def shape_key(self) -> TrainConfig:
        """The config with what may differ between runs of one compiled program (seed, learning
        rate, warm start) blanked: runs with equal shape keys train together."""
        return dataclasses.replace(self, seed=0, learning_rate=1.0, warm_start="")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields. Fields added after the first release appear only where they differ
        from what every earlier run had (`_LEGACY`: no warm start, Flax's lecun_normal init,
        plain Adam steps), so the hashes (run directory names) of earlier runs do not change."""
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        for name, value in _LEGACY.items():
            if d[name] == value:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The config of `to_dict`'s output (a missing later field has its legacy value)."""
        return cls(**{**_LEGACY, **d, "hidden": tuple(d["hidden"])})


# Later fields: what every earlier run had.
_LEGACY = {"warm_start": "", "init": "lecun_normal", "prox_steps": 0, "prox_lambda": 1e-3}


def _parse_warm_start(text: str) -> tuple[str, int] | None:
    name, sep, epoch = text.rpartition("@")
    if not sep or not name or not epoch.isdigit():
        return None
    return name, int(epoch)


class TrainState(NamedTuple):
    params: Any
    batch_stats: Any
    opt_state: Any


class TrainedRun(NamedTuple):
    """One run's result: variables (numpy), per-epoch history, and how training ended.

    `epochs_run` is the run's epoch (for a snapshot, the epoch it was taken after);
    `diverged` is True when the training loss became NaN or infinite (the run was stopped
    there); `snapshot` is True when the variables are a saved snapshot of a longer run
    (measurements.snapshot_of). `stop_reason` is prose for people, never parsed.
    """

    config: TrainConfig
    params: Any
    batch_stats: Any
    history: dict[str, list[float]]
    epochs_run: int
    stop_reason: str
    train_seconds: float
    diverged: bool = False
    snapshot: bool = False
