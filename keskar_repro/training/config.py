"""A training run's configuration (`TrainConfig`, hashed into its run directory), its state,
and the record of a trained run (`TrainedRun`); keskar_repro.training.train trains them."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np
import optax

from keskar_repro.training.bn_policies import BN_POLICIES, DEFAULT_CHUNK_SIZE
from keskar_repro.training.methods import LR_SCALINGS, get_method, lr_multiplier, optimizer
from keskar_repro.training.models import KERNEL_INITS, MLP

STOPPING_RULES = ("epochs", "patience")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained run (its hash names the run on disk)."""

    dataset: str = "mnist10k"  # name given to keskar_repro.data.load
    batch_size: int = 256  # examples per step
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
    # The training method (keskar_repro.training.methods.METHODS): "adam" (the paper's), "sgd",
    # "sam" or "conservative"; "" = the one the other fields imply ("conservative" where
    # prox_steps > 0, else "adam"), which is how runs saved before the field read.
    method: str = ""
    # Conservative training (paper App. E.2, Table 7): Adam iterations on each batch's proximal
    # sub-problem min_x f_B(x) + (prox_lambda / 2) ||x - x_k||^2; 0 = not conservative.
    prox_steps: int = 0
    prox_lambda: float = 1e-3  # lambda of the proximal term (the paper's 1e-3)
    momentum: float = 0.9  # "sgd": heavy-ball momentum (0: plain SGD)
    sam_rho: float = 0.05  # "sam": radius of the ascent step (Foret et al.'s default)
    lr_scaling: str = "none"  # learning rate x (batch / lr_base_batch): "linear", "sqrt"
    lr_base_batch: int = 256  # the batch size at which the learning rate is `learning_rate`
    warmup_epochs: int = 0  # epochs of gradual warm-up from the unscaled to the scaled rate
    ghost_batch: int = 0  # batch-norm statistics over virtual batches of this size (0: batch)
    weight_decay: float = 0.0  # L2 term added to the gradient, wd x (every parameter)
    lr_drops: tuple[int, ...] = ()  # epochs after which the learning rate is multiplied by:
    lr_drop_factor: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "lr_drops", tuple(int(e) for e in self.lr_drops))
        if not self.method:
            object.__setattr__(self, "method", "conservative" if self.prox_steps else "adam")
        get_method(self.method)  # ValueError naming the registered methods
        conservative = self.method == "conservative"
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
            "prox_steps": self.prox_steps >= 0 and (self.prox_steps >= 1) == conservative,
            "prox_lambda": self.prox_lambda >= 0 and np.isfinite(self.prox_lambda),
            "momentum": 0 <= self.momentum < 1,
            "sam_rho": self.sam_rho > 0 and np.isfinite(self.sam_rho),
            "lr_scaling": self.lr_scaling in LR_SCALINGS,
            "lr_base_batch": self.lr_base_batch >= 1,
            "warmup_epochs": 0 <= self.warmup_epochs < self.epochs,
            "ghost_batch": 0 <= self.ghost_batch <= self.batch_size,
            "weight_decay": self.weight_decay >= 0 and np.isfinite(self.weight_decay),
            "lr_drops": all(0 < e < self.epochs for e in self.lr_drops)
            and list(self.lr_drops) == sorted(set(self.lr_drops)),
            "lr_drop_factor": 0 < self.lr_drop_factor <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(
                    f"TrainConfig.{name}={getattr(self, name)!r} is invalid{_WHY.get(name, '')}"
                )
        if self.warmup_epochs and lr_multiplier(self) == 1:
            raise ValueError(
                "TrainConfig.warmup_epochs: the warm-up climbs from the unscaled to the scaled "
                "learning rate, and lr_scaling leaves it unscaled here; set lr_scaling"
            )

    def model(self) -> MLP:
        """The network as it is evaluated and measured (plain batch norm)."""
        return MLP(
            hidden=self.hidden,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            kernel_init=self.init,
        )

    def train_model(self) -> MLP:
        """The network as it trains: `model()` with ghost batch norm where ghost_batch > 0 (the
        same variables, so a trained run is evaluated and measured with plain batch norm)."""
        return dataclasses.replace(self.model(), ghost_batch=self.ghost_batch)

    def optimizer(self, steps_per_epoch: int = 1) -> optax.GradientTransformation:
        """The method's optimizer (keskar_repro.training.methods): its learning rate lives in
        the optimizer state (`inject_hyperparams`), so that runs with different learning rates
        share one compiled, vmapped program; Adam's update is bit-identical to
        `optax.adam(learning_rate, b1, b2, eps)`."""
        return optimizer(self, steps_per_epoch)

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
        d["hidden"], d["lr_drops"] = list(self.hidden), list(self.lr_drops)
        for name, value in {**_LEGACY, "method": self._implied_method()}.items():
            if d[name] == value:
                del d[name]
        return d

    def _implied_method(self) -> str:
        return "conservative" if self.prox_steps else "adam"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The config of `to_dict`'s output (a missing later field has its legacy value)."""
        return cls(**{**_LEGACY, "method": "", **d, "hidden": tuple(d["hidden"])})


# Later fields: what every earlier run had (and "method": the one prox_steps implies).
_LEGACY = {
    "warm_start": "", "init": "lecun_normal", "prox_steps": 0, "prox_lambda": 1e-3,
    "momentum": 0.9, "sam_rho": 0.05, "lr_scaling": "none", "lr_base_batch": 256,
    "warmup_epochs": 0, "ghost_batch": 0, "weight_decay": 0.0, "lr_drops": [],
    "lr_drop_factor": 0.1,
}  # fmt: skip
_WHY = {  # what an invalid value needs, where the check alone does not say
    "prox_steps": " (>= 1 exactly when method is 'conservative')",
    "warmup_epochs": " (0 <= warmup_epochs < epochs)",
    "ghost_batch": " (0 <= ghost_batch <= batch_size: a virtual batch inside the batch)",
    "lr_scaling": f" (one of {', '.join(LR_SCALINGS)})",
    "sam_rho": " (> 0)",
    "momentum": " (0 <= momentum < 1)",
    "lr_drops": " (increasing epochs inside the training)",
}


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
