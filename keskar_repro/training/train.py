"""Jit-compiled small- and large-batch training of the paper's MLPs with Adam (or another
training method of keskar_repro.training.methods: SGD with momentum, SAM, conservative
training; learning-rate scaling and warm-up; ghost batch norm).

The protocol (Keskar et al. 2017, Section 2.2 and Table 1):

- Adam with optax's defaults (lr 1e-3, b1 0.9, b2 0.999, eps 1e-8), no weight decay, no schedule;
- mean softmax cross-entropy over the minibatch (objective.cross_entropy, precise at tiny
  values); pixels scaled to [0, 1], nothing else;
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

History: per epoch, the exact training and test loss and accuracy (after the epoch), the
minibatch averages during it, the wall time, and the Frobenius norm of every Dense kernel
(`KERNEL_NORM` + layer name), so the weight scale along training is on record for every run.

Devices: the dataset is replicated on every device and each minibatch is split over them
(parallel.py), so with several devices the same program runs data-parallel; one device is the
unchanged single-device program.

Stopping: `stopping="epochs"` trains exactly `epochs` epochs. `stopping="patience"` is our
reading of the paper's "until the loss ceased to improve": stop once the exact training loss
(evaluated after each epoch) has not fallen below (1 - min_rel_improvement) times its best value
for `patience` consecutive epochs, or after `epochs` epochs, whichever comes first; the
parameters of the last epoch are kept.

Conservative training (paper App. E.2, Table 7; method "conservative", `prox_steps` = m > 0,
`prox_lambda` = lambda):
each step solves the proximal sub-problem of its batch B_k inexactly,

    x_{k+1} ~ argmin_x (1/|B_k|) sum_{i in B_k} f_i(x) + (lambda / 2) ||x - x_k||^2,

with m Adam iterations started at x_k (the paper: m = 3, lambda = 1e-3), whose gradient is
grad f_B(x) + lambda (x - x_k). Choices the paper leaves open (paper_notes.md): Adam's state is
kept across steps (one Adam runs through the sequence of sub-problems, as it runs through the
sequence of batches in plain training); x is every trainable parameter, BN scales and offsets
included, and never the BN running averages; every inner iteration is a training-mode pass on
B_k at the current inner iterate, so batch statistics come from that iterate and the running
averages are updated m times per batch, as m Keras `train_on_batch` calls would. The epoch's
reported minibatch loss is f_B(x_k), the loss at the start of each step, as in plain training.

History: after each epoch, the exact train and test cross-entropy and accuracy under the
evaluation batch-norm policy (default "batch" with chunks of 5000, the authors' Keras setting;
see objective.py), plus the mean minibatch loss and accuracy seen during the epoch.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from keskar_repro.devices.parallel import replicate
from keskar_repro.errors import DivergenceError

# The training API in one place: configurations and records (config.py) and the compiled epoch
# (epoch.py) are re-exported here beside the loop.
from keskar_repro.training.config import (  # noqa: F401
    STOPPING_RULES,
    TrainConfig,
    TrainedRun,
    TrainState,
)
from keskar_repro.training.epoch import (  # noqa: F401
    default_runs_per_program,
    initial_state,
    make_epoch_fn,
    make_eval_fn,
    runs_epoch_fn,
    seed_keys,
    stacked_initial_state,
)
from keskar_repro.training.reparam import mlp_layers

HISTORY_KEYS = (
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "minibatch_loss",
    "minibatch_accuracy",
    "seconds",
)
KERNEL_NORM = "kernel_norm/"  # + a Dense layer's name: its kernel's Frobenius norm per epoch
_LOOP_META = ("epoch", "histories", "active", "stop_reasons", "diverged", "seconds")


@dataclasses.dataclass
class LoopState:
    """Where a group of runs trained in one program stands after `epoch` epochs."""

    state: TrainState  # stacked along a leading run axis, on the device
    epoch: int  # epochs completed
    # per run, HISTORY_KEYS and KERNEL_NORM + layer -> one value per epoch
    histories: list[dict[str, list[float]]]
    active: np.ndarray  # per run: still training (stopped runs are frozen)
    stop_reasons: list[str]  # per run: "" while training
    diverged: list[bool]  # per run: stopped because its loss became NaN or infinite
    seconds: float  # training wall time so far

    @classmethod
    def start(cls, state: TrainState) -> LoopState:
        n = int(jax.tree_util.tree_leaves(state)[0].shape[0])
        keys = HISTORY_KEYS + tuple(KERNEL_NORM + layer for layer in _dense_names(state.params))
        histories = [{k: [] for k in keys} for _ in range(n)]
        return cls(state, 0, histories, np.ones(n, bool), [""] * n, [False] * n, 0.0)

    def to_checkpoint(self) -> bytes:
        """msgpack bytes of the whole state (parameters, BN statistics, Adam state, history)."""
        meta = {k: getattr(self, k) for k in _LOOP_META}
        meta["active"] = self.active.tolist()
        state = jax.tree_util.tree_map(np.asarray, flax.serialization.to_state_dict(self.state))
        return flax.serialization.msgpack_serialize({"state": state, "meta": json.dumps(meta)})

    @classmethod
    def from_checkpoint(cls, blob: bytes, template: TrainState) -> LoopState:
        """The state written by `to_checkpoint`; `template` (e.g. the initial stacked state)
        gives the pytree structure. Raises ValueError/KeyError/TypeError if `blob` is not one."""
        raw = flax.serialization.msgpack_restore(blob)
        meta = json.loads(raw["meta"])
        state = flax.serialization.from_state_dict(template, raw["state"])
        return cls(
            state=jax.tree_util.tree_map(jnp.asarray, state),
            epoch=int(meta["epoch"]),
            histories=meta["histories"],
            active=np.asarray(meta["active"], bool),
            stop_reasons=list(meta["stop_reasons"]),
            diverged=list(meta["diverged"]),
            seconds=float(meta["seconds"]),
        )

    def variables(self, i: int) -> dict[str, Any]:
        """{"params", "batch_stats"} of run i as numpy arrays."""
        return {
            "params": _unstack(self.state.params, i),
            "batch_stats": _unstack(self.state.batch_stats, i),
        }


class Checkpointer(Protocol):
    """Where `train_runs` resumes from and saves to (runs.py keeps one file per group)."""

    def load(self, template: TrainState) -> LoopState | None: ...

    def save(self, loop: LoopState, done: bool) -> None: ...


def _mask_tree(active, new, old):
    """Per-run select: `new` where the run is active, `old` where it has stopped."""

    def pick(n, o):
        return jnp.where(active.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)

    return jax.tree_util.tree_map(pick, new, old)


def _dense_names(params) -> tuple[str, ...]:
    """The Dense modules of a models.MLP params dict, in layer order (reparam.mlp_layers)."""
    layers = mlp_layers(params)
    return (*layers.hidden, layers.output)


def _kernel_norms(params) -> dict[str, jax.Array]:
    """{KERNEL_NORM + layer: ||kernel||_F per run} of stacked params (leading run axis),
    accumulated in float32: the weight scale along training (the sharpness-notions study)."""
    return {
        KERNEL_NORM + layer: jnp.sqrt(jnp.sum(jnp.square(params[layer]["kernel"]), axis=(1, 2)))
        for layer in _dense_names(params)
    }


def _unstack(tree, i):
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf[i]), tree)


@functools.lru_cache(maxsize=32)
def _epoch_program(shape: TrainConfig, n_runs: int, n_train: int) -> Callable:
    """The jitted `(state, active, epoch, shuffle_keys, data) -> (state, metrics, norms)`: one
    epoch of every run (frozen where not active), then the exact train and test loss and
    accuracy of each, and its kernels' Frobenius norms (`_kernel_norms`).

    `data` = (x_train, y_train, x_test, y_test) and the shuffle keys are arguments, not
    constants, so one program (one function object per `shape_key()`, run count and training
    size; jax.jit compiles it once per data shape) serves every seed, learning rate and warm
    start of a shape, and XLA does not embed the images in it."""
    epochs = runs_epoch_fn(shape, n_runs, n_train)
    evaluate = jax.vmap(make_eval_fn(shape), in_axes=(0, 0, None, None))

    @jax.jit
    def run_epoch(state, active, epoch_index, shuffle_keys, data):
        x_tr, y_tr, x_te, y_te = data
        new_state, (mb_loss, mb_acc) = epochs(state, x_tr, y_tr, shuffle_keys, epoch_index)
        state = _mask_tree(active, new_state, state)
        train_loss, train_acc = evaluate(state.params, state.batch_stats, x_tr, y_tr)
        test_loss, test_acc = evaluate(state.params, state.batch_stats, x_te, y_te)
        metrics = (train_loss, train_acc, test_loss, test_acc, mb_loss, mb_acc)
        return state, metrics, _kernel_norms(state.params)

    return run_epoch


def record_epoch(
    loop: LoopState,
    metrics: Sequence[np.ndarray],
    configs: list[TrainConfig],
    on_divergence: str,
    norms: dict[str, np.ndarray] | None = None,
) -> None:
    """Append one epoch's metrics (and kernel norms, keyed KERNEL_NORM + layer) to the history
    of every active run and apply the stopping
    rules: patience, and a non-finite training loss (raised as a DivergenceError under
    on_divergence="raise", else the run is stopped and marked diverged)."""
    loop.epoch += 1
    for i, history in enumerate(loop.histories):
        if not loop.active[i]:
            continue
        for key, values in zip(HISTORY_KEYS[:-1], metrics, strict=True):
            history[key].append(float(values[i]))
        for key, values in (norms or {}).items():
            if key in history:  # absent in a run resumed from a checkpoint made before them
                history[key].append(float(values[i]))
        history["seconds"].append(loop.seconds)
        reason = _stop_reason(history["train_loss"], configs[i])
        if not np.isfinite(history["minibatch_loss"][-1]):
            if on_divergence == "raise":
                raise _divergence_error(history, configs[i])
            reason = f"{DIVERGED}: training loss became nan or inf in epoch {loop.epoch}"
            loop.diverged[i] = True
        if reason:
            loop.active[i], loop.stop_reasons[i] = False, reason


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
    checkpoint: Checkpointer | None = None,
    on_divergence: str = "raise",
) -> list[TrainedRun]:
    """Train several runs in one compiled program (`vmap` over runs) and return a TrainedRun each.

    The configs may differ in seed, learning rate and warm start, nothing else (equal
    `shape_key()`): a learning-rate x seed grid at one batch size costs one compilation.
    `initial_variables[i]` ({"params", "batch_stats"}) replaces the seed's initial point of run i
    (a warm start; its Adam state starts fresh). `on_snapshot(epoch, variables)` receives every
    run's {"params", "batch_stats"} (numpy) after each epoch in `snapshot_epochs` (0 = the
    initial point). `checkpoint` resumes an interrupted job and is saved after every epoch.
    A run whose training loss becomes NaN or infinite raises a DivergenceError
    (`on_divergence="raise"`) or is stopped and marked `diverged` (`"stop"`, for sweeps over
    learning rates, where divergence is a result).
    """
    configs = list(configs)
    snapshot_epochs = _check_group(configs, initial_variables, snapshot_epochs, on_divergence)
    config = configs[0]
    data = (replicate(x_train), replicate(np.asarray(y_train, np.int32)))
    data += (replicate(x_test), replicate(np.asarray(y_test, np.int32)))
    run_epoch = _epoch_program(config.shape_key(), len(configs), int(x_train.shape[0]))
    shuffle_keys = jnp.stack([seed_keys(c.seed)[1] for c in configs])
    initial = stacked_initial_state(configs, initial_variables)
    loop = checkpoint.load(initial) if checkpoint is not None else None

    def snapshot(epoch: int) -> None:
        if on_snapshot is not None and epoch in snapshot_epochs:
            on_snapshot(epoch, [loop.variables(i) for i in range(len(configs))])

    if loop is None:
        loop = LoopState.start(initial)
        snapshot(0)
    # placed as the program's outputs will be, so the first epoch does not compile on its own
    loop.state = jax.tree_util.tree_map(replicate, loop.state)
    bar = _progress_bar(
        config.epochs, loop.epoch, f"train B={config.batch_size} runs={len(configs)}", progress
    )
    while loop.epoch < config.epochs and loop.active.any():
        t0 = time.perf_counter()
        loop.state, metrics, norms = run_epoch(
            loop.state, jnp.asarray(loop.active), loop.epoch, shuffle_keys, data
        )
        metrics = [np.asarray(m, np.float64) for m in metrics]
        norms = {k: np.asarray(v, np.float64) for k, v in norms.items()}
        loop.seconds += time.perf_counter() - t0
        record_epoch(loop, metrics, configs, on_divergence, norms)
        snapshot(loop.epoch)
        bar.update(1)
        bar.set_postfix_str(
            " ".join(f"{lo:.3g}/{acc:.4f}" for lo, acc in zip(metrics[0], metrics[3], strict=True))
            + " (train CE / test acc)"
        )
        if checkpoint is not None:
            checkpoint.save(loop, done=loop.epoch == config.epochs or not loop.active.any())
    bar.close()
    for later in snapshot_epochs:  # all runs stopped early: their final state stands in
        if later > loop.epoch:
            snapshot(later)
    return [_trained_run(loop, i, c) for i, c in enumerate(configs)]


def _check_group(configs, initial_variables, snapshot_epochs, on_divergence) -> list[int]:
    """Validate `train_runs`' arguments; returns the sorted snapshot epochs."""
    if on_divergence not in ("raise", "stop"):
        raise ValueError(f"on_divergence={on_divergence!r} is not 'raise' or 'stop'")
    if not configs:
        raise ValueError("configs is empty: give at least one run to train")
    mismatched = [c for c in configs if c.shape_key() != configs[0].shape_key()]
    if mismatched:
        raise ValueError(
            "runs trained together may differ only in seed, learning_rate and warm_start; "
            f"{mismatched[0]} differs from {configs[0]}"
        )
    if initial_variables is not None and len(initial_variables) != len(configs):
        raise ValueError("initial_variables needs one entry (or None) per config")
    epochs = sorted({int(e) for e in snapshot_epochs})
    if epochs and not 0 <= epochs[0] <= epochs[-1] <= configs[0].epochs:
        raise ValueError(f"snapshot_epochs {epochs} must lie in [0, {configs[0].epochs}]")
    return epochs


def _trained_run(loop: LoopState, i: int, config: TrainConfig) -> TrainedRun:
    variables = loop.variables(i)
    return TrainedRun(
        config=config,
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        history=loop.histories[i],
        epochs_run=len(loop.histories[i]["train_loss"]),
        stop_reason=loop.stop_reasons[i] or f"reached {config.epochs} epochs",
        train_seconds=loop.seconds,
        diverged=loop.diverged[i],
    )


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


DIVERGED = "diverged"  # first word of a diverged run's stop_reason (prose; see TrainedRun)


def _divergence_error(history: dict, config: TrainConfig) -> DivergenceError:
    return DivergenceError(
        f"training loss became {history['minibatch_loss'][-1]} at epoch "
        f"{len(history['minibatch_loss'])} (seed {config.seed}, batch "
        f"{config.batch_size}, lr {config.learning_rate}): lower the learning rate"
    )


def _progress_bar(total: int, initial: int, label: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=label, unit="epoch", disable=not enabled, leave=False
    )
