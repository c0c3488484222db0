"""Jit-compiled small- and large-batch training of the paper's MLPs with Adam.

The protocol (Keskar et al. 2017, Section 2.2 and Table 1):

- Adam with optax's defaults (lr 1e-3, b1 0.9, b2 0.999, eps 1e-8), no weight decay, no schedule;
- mean softmax cross-entropy over the minibatch; pixels scaled to [0, 1], nothing else;
- small batch (SB) = 256, large batch (LB) = 10% of the training set;
- SB and LB with the same seed start from the same initial parameters and a fresh optimizer state
  (the initial point depends only on the seed and the architecture, never on the batch size).

One epoch is one compiled call: the training set lives on the device, the epoch's permutation
comes from `fold_in(shuffle_key, epoch)`, and `lax.scan` runs the minibatches. The last partial
batch is dropped: an epoch is floor(N / B) steps of exactly B examples, so every step has one
shape; the N mod B examples left out differ from epoch to epoch (for SB on 60,000 images, 96 per
epoch; for LB at 10% of the data, none).

Several runs train in one compiled program (`vmap` over a run axis): seeds, and also learning
rates (the rate lives in the Adam state) and warm starts (another run's snapshot as the initial
point) at one batch size. Runs that have met the stopping rule are frozen (their update is
masked), so the others can continue. Snapshots of the parameters after chosen epochs feed the
warm starts and the sharpness-along-training measurements.

Devices: the dataset is replicated on every device and each minibatch is split over them
(parallel.py), so with several devices the same program runs data-parallel; one device is the
unchanged single-device program.

Stopping: `stopping="epochs"` trains exactly `epochs` epochs. `stopping="patience"` is our
reading of the paper's "until the loss ceased to improve": stop once the exact training loss
(evaluated after each epoch) has not fallen below (1 - min_rel_improvement) times its best value
for `patience` consecutive epochs, or after `epochs` epochs, whichever comes first; the
parameters of the last epoch are kept.

History: after each epoch, the exact train and test cross-entropy and accuracy under the
evaluation batch-norm policy (default "batch" with chunks of 5000, the authors' Keras setting;
see objective.py), plus the mean minibatch loss and accuracy seen during the epoch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from keskar_repro.models import MLP, init_variables
from keskar_repro.objective import BN_POLICIES, DEFAULT_CHUNK_SIZE, scale_pixels, split_metrics
from keskar_repro.parallel import replicate, shard_examples

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
            "eval_chunk_size": self.eval_chunk_size >= 1,
            "warm_start": not self.warm_start or _parse_warm_start(self.warm_start) is not None,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r} is invalid")

    def model(self) -> MLP:
        return MLP(hidden=self.hidden, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)

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
        """JSON-ready fields; fields added after the first release (warm_start) appear only when
        set, so the hashes (run directory names) of earlier runs do not change."""
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        if not d["warm_start"]:
            del d["warm_start"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**{**d, "hidden": tuple(d["hidden"])})


def _parse_warm_start(text: str) -> tuple[str, int] | None:
    name, sep, epoch = text.rpartition("@")
    if not sep or not name or not epoch.isdigit():
        return None
    return name, int(epoch)


PAPER_SB_BATCH, PAPER_LB_FRACTION = 256, 0.10
PAPER_LB_SB_RATIO = 60000 * PAPER_LB_FRACTION / PAPER_SB_BATCH  # 6000 / 256 = 23.4


def paper_batch_sizes(
    n_train: int, sb_batch: int | None = None, lb_batch: int | None = None
) -> tuple[int, int, str]:
    """(SB, LB, explanation) for `n_train` training images.

    LB = 10% of the training set; SB = LB / 23.4, the paper's ratio (256 on 60,000 images, 34 on
    mnist10k's 8,000, where the literal 256 would be only 3x smaller than LB). Either can be
    given explicitly; a batch larger than the training set is a ValueError.
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
            raise ValueError(f"{name}={b} exceeds the {n_train} training images")
    return sb, lb, note


class TrainState(NamedTuple):
    params: Any
    batch_stats: Any
    opt_state: Any


class TrainedRun(NamedTuple):
    """One seed's result: final variables (numpy), per-epoch history, and how training ended."""

    config: TrainConfig
    params: Any
    batch_stats: Any
    history: dict[str, list[float]]
    epochs_run: int
    stop_reason: str
    train_seconds: float


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(init_key, shuffle_key) of a seed; SB and LB runs with the same seed share init_key."""
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    return init_key, shuffle_key


def init_state(config: TrainConfig) -> TrainState:
    """Initial parameters from the seed, fresh BN statistics and fresh Adam state."""
    return initial_state(config, None)


def initial_state(config: TrainConfig, variables: dict | None) -> TrainState:
    """`variables` ({"params", "batch_stats"}; default: the seed's initial point) with a fresh
    Adam state at the config's learning rate."""
    if variables is None:
        variables = init_variables(config.model(), seed_keys(config.seed)[0])
    params = jax.tree_util.tree_map(jnp.asarray, variables["params"])
    batch_stats = jax.tree_util.tree_map(jnp.asarray, variables["batch_stats"])
    return TrainState(params, batch_stats, config.optimizer().init(params))


def make_epoch_fn(config: TrainConfig, n_train: int) -> Callable:
    """`epoch(state, x_uint8, y, shuffle_key, epoch) -> (state, (mean_loss, mean_acc))`.

    floor(n_train / batch_size) Adam steps in one `lax.scan`; pure and jit-able.
    """
    model, optimizer, batch = config.model(), config.optimizer(), config.batch_size
    steps = n_train // batch
    if steps < 1:
        raise ValueError(
            f"batch_size={batch} exceeds the {n_train} training examples; use a smaller batch"
        )

    def loss_and_stats(params, batch_stats, xb, yb):
        logits, updates = model.apply(
            {"params": params, "batch_stats": batch_stats},
            scale_pixels(xb),
            use_running_average=False,
            mutable=["batch_stats"],
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        accuracy = jnp.mean(jnp.argmax(logits, -1) == yb)
        return loss, (updates["batch_stats"], accuracy)

    grad_fn = jax.value_and_grad(loss_and_stats, has_aux=True)

    def epoch(state: TrainState, x_uint8, y, shuffle_key, epoch_index):
        def step(state: TrainState, idx):
            xb, yb = shard_examples(x_uint8[idx]), shard_examples(y[idx])
            (loss, (batch_stats, accuracy)), grads = grad_fn(
                state.params, state.batch_stats, xb, yb
            )
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            return TrainState(params, batch_stats, opt_state), (loss, accuracy)

        perm = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch_index), n_train)
        batches = perm[: steps * batch].reshape((steps, batch))
        state, (losses, accuracies) = jax.lax.scan(step, state, batches)
        return state, (losses.mean(), accuracies.mean())

    return epoch


def make_eval_fn(config: TrainConfig) -> Callable:
    """`evaluate(params, batch_stats, x, y) -> (loss, accuracy)` under the config's BN policy."""
    model = config.model()

    def evaluate(params, batch_stats, x_uint8, y):
        return split_metrics(
            model,
            params,
            batch_stats,
            x_uint8,
            y,
            bn_policy=config.eval_bn_policy,
            chunk_size=config.eval_chunk_size,
        )

    return evaluate


def _mask_tree(active, new, old):
    """Per-seed select: `new` where the seed is active, `old` where it has stopped."""

    def pick(n, o):
        return jnp.where(active.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)

    return jax.tree_util.tree_map(pick, new, old)


def _stack(trees):
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def _unstack(tree, i):
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf[i]), tree)


HISTORY_KEYS = (
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "minibatch_loss",
    "minibatch_accuracy",
    "seconds",
)


def train_seeds(
    config: TrainConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    seeds: Sequence[int],
    *,
    vmap_seeds: bool = True,
    progress: bool = True,
    resume: dict | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> list[TrainedRun]:
    """Train `config` once per seed (config.seed is replaced) and return one TrainedRun each.

    With `vmap_seeds`, all seeds train in one compiled program (`train_runs`); otherwise one
    after another. `resume` and `on_epoch_end` are as in `train_runs`.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed")
    data = (x_train, y_train, x_test, y_test)
    configs = [dataclasses.replace(config, seed=s) for s in seeds]
    if not vmap_seeds and len(seeds) > 1:
        return [run for c in configs for run in train_runs([c], *data, progress=progress)]
    return train_runs(configs, *data, progress=progress, resume=resume, on_epoch_end=on_epoch_end)


def train_runs(
    configs: Sequence[TrainConfig],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    initial_variables: Sequence[dict | None] | None = None,
    snapshot_epochs: Sequence[int] = (),
    on_snapshot: Callable[[int, list[dict]], None] | None = None,
    progress: bool = True,
    resume: dict | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
    on_divergence: str = "raise",
) -> list[TrainedRun]:
    """Train several runs in one compiled program (`vmap` over runs) and return a TrainedRun each.

    The configs may differ in seed, learning rate and warm start, nothing else (equal
    `shape_key()`): a learning-rate x seed grid at one batch size costs one compilation.
    `initial_variables[i]` ({"params", "batch_stats"}) replaces the seed's initial point of run i
    (a warm start; its Adam state starts fresh). `on_snapshot(epoch, variables)` receives every
    run's {"params", "batch_stats"} (numpy) after each epoch in `snapshot_epochs` (0 = the
    initial point). `resume` is a checkpoint dict as passed to `on_epoch_end` (keys "state",
    "epoch", "histories", "active", "stop_reasons", "seconds"), to continue an interrupted job.
    A run whose training loss becomes NaN or infinite raises FloatingPointError
    (`on_divergence="raise"`) or is stopped with stop_reason "diverged ..." (`"stop"`, for
    sweeps over learning rates, where divergence is a result).
    """
    if on_divergence not in ("raise", "stop"):
        raise ValueError(f"on_divergence={on_divergence!r} is not 'raise' or 'stop'")
    configs = list(configs)
    if not configs:
        raise ValueError("configs is empty: give at least one run to train")
    config = configs[0]
    mismatched = [c for c in configs if c.shape_key() != config.shape_key()]
    if mismatched:
        raise ValueError(
            "runs trained together may differ only in seed, learning_rate and warm_start; "
            f"{mismatched[0]} differs from {config}"
        )
    initial_variables = list(initial_variables or [None] * len(configs))
    if len(initial_variables) != len(configs):
        raise ValueError("initial_variables needs one entry (or None) per config")
    snapshot_epochs = sorted({int(e) for e in snapshot_epochs})
    if snapshot_epochs and not 0 <= snapshot_epochs[0] <= snapshot_epochs[-1] <= config.epochs:
        raise ValueError(f"snapshot_epochs {snapshot_epochs} must lie in [0, {config.epochs}]")

    n_train = int(x_train.shape[0])
    x_tr, y_tr = replicate(x_train), replicate(np.asarray(y_train, np.int32))
    x_te, y_te = replicate(x_test), replicate(np.asarray(y_test, np.int32))
    shuffle_keys = jnp.stack([seed_keys(c.seed)[1] for c in configs])

    epoch_fn = make_epoch_fn(config, n_train)
    eval_fn = make_eval_fn(config)
    lone = len(configs) == 1

    @jax.jit
    def run_epoch(state, active, epoch_index):
        if lone:  # no batch axis in the matmuls of a lone run
            single = jax.tree_util.tree_map(lambda leaf: leaf[0], state)
            new_single, metrics = epoch_fn(single, x_tr, y_tr, shuffle_keys[0], epoch_index)
            new_state = jax.tree_util.tree_map(lambda leaf: leaf[None], new_single)
            mb_loss, mb_acc = (m[None] for m in metrics)
        else:
            new_state, (mb_loss, mb_acc) = jax.vmap(epoch_fn, in_axes=(0, None, None, 0, None))(
                state, x_tr, y_tr, shuffle_keys, epoch_index
            )
        state = _mask_tree(active, new_state, state)
        evaluate = jax.vmap(eval_fn, in_axes=(0, 0, None, None))
        train_loss, train_acc = evaluate(state.params, state.batch_stats, x_tr, y_tr)
        test_loss, test_acc = evaluate(state.params, state.batch_stats, x_te, y_te)
        return state, (train_loss, train_acc, test_loss, test_acc, mb_loss, mb_acc)

    state = _stack([initial_state(c, v) for c, v in zip(configs, initial_variables, strict=True)])

    def snapshot(epoch: int) -> None:
        if on_snapshot is not None and epoch in snapshot_epochs:
            on_snapshot(
                epoch,
                [
                    {
                        "params": _unstack(state.params, i),
                        "batch_stats": _unstack(state.batch_stats, i),
                    }
                    for i in range(len(configs))
                ],
            )

    if resume is None:
        start_epoch, seconds = 0, 0.0
        histories = [{k: [] for k in HISTORY_KEYS} for _ in configs]
        active = np.ones(len(configs), bool)
        stop_reasons = [""] * len(configs)
        snapshot(0)
    else:
        state = flax.serialization.from_state_dict(state, resume["state"])
        state = jax.tree_util.tree_map(jnp.asarray, state)
        start_epoch, seconds = int(resume["epoch"]), float(resume["seconds"])
        histories, stop_reasons = resume["histories"], list(resume["stop_reasons"])
        active = np.asarray(resume["active"], bool)

    label = f"train B={config.batch_size} runs={len(configs)}"
    bar = _progress_bar(config.epochs, start_epoch, label, progress)
    completed = start_epoch
    for epoch in range(start_epoch, config.epochs):
        if not active.any():
            break
        completed = epoch + 1
        t0 = time.perf_counter()
        state, metrics = run_epoch(state, jnp.asarray(active), epoch)
        metrics = [np.asarray(m, np.float64) for m in metrics]
        seconds += time.perf_counter() - t0
        for i, history in enumerate(histories):
            if not active[i]:
                continue
            for key, values in zip(HISTORY_KEYS[:-1], metrics, strict=True):
                history[key].append(float(values[i]))
            history["seconds"].append(seconds)
            reason = _stop_reason(history["train_loss"], configs[i])
            if on_divergence == "stop" and not np.isfinite(history["minibatch_loss"][-1]):
                reason = f"{DIVERGED}: training loss became nan or inf in epoch {epoch + 1}"
            if reason:
                active[i], stop_reasons[i] = False, reason
        if on_divergence == "raise":
            _check_finite(histories, configs)
        snapshot(epoch + 1)
        bar.update(1)
        bar.set_postfix_str(
            " ".join(
                f"{loss:.3g}/{acc:.4f}" for loss, acc in zip(metrics[0], metrics[3], strict=True)
            )
            + " (train CE / test acc)"
        )
        if on_epoch_end is not None:
            on_epoch_end(
                {
                    "state": jax.tree_util.tree_map(
                        np.asarray, flax.serialization.to_state_dict(state)
                    ),
                    "epoch": epoch + 1,
                    "histories": histories,
                    "active": active.tolist(),
                    "stop_reasons": stop_reasons,
                    "seconds": seconds,
                }
            )
    bar.close()
    for later in snapshot_epochs:  # all runs stopped early: their final state stands in
        if later > completed:
            snapshot(later)

    runs = []
    for i, c in enumerate(configs):
        reason = stop_reasons[i] or f"reached {config.epochs} epochs"
        runs.append(
            TrainedRun(
                config=c,
                params=_unstack(state.params, i),
                batch_stats=_unstack(state.batch_stats, i),
                history=histories[i],
                epochs_run=len(histories[i]["train_loss"]),
                stop_reason=reason,
                train_seconds=seconds,
            )
        )
    return runs


def _stop_reason(train_losses: list[float], config: TrainConfig) -> str:
    """Non-empty when the patience rule says stop (never under stopping="epochs")."""
    if config.stopping != "patience" or len(train_losses) <= config.patience:
        return ""
    best_before = min(train_losses[: -config.patience])
    threshold = (1.0 - config.min_rel_improvement) * best_before
    if min(train_losses[-config.patience :]) >= threshold:
        return (
            f"train loss did not fall below {threshold:.3g} for {config.patience} epochs"
            f" (stopped after epoch {len(train_losses)})"
        )
    return ""


DIVERGED = "diverged"


def _check_finite(histories: list[dict], configs: list[TrainConfig]) -> None:
    for config, history in zip(configs, histories, strict=True):
        if history["minibatch_loss"] and not np.isfinite(history["minibatch_loss"][-1]):
            raise FloatingPointError(
                f"training loss became {history['minibatch_loss'][-1]} at epoch "
                f"{len(history['minibatch_loss'])} (seed {config.seed}, batch "
                f"{config.batch_size}, lr {config.learning_rate}): lower the learning rate"
            )


def _progress_bar(total: int, initial: int, label: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=label, unit="epoch", disable=not enabled, leave=False
    )
