"""Jit-compiled small- and large-batch training of the paper's MLPs with Adam.

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

Conservative training (paper App. E.2, Table 7; `prox_steps` = m > 0, `prox_lambda` = lambda):
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
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from keskar_repro.devices.parallel import replicate, shard_examples
from keskar_repro.errors import DivergenceError, UserError
from keskar_repro.training.bn_policies import BN_POLICIES, DEFAULT_CHUNK_SIZE
from keskar_repro.training.models import KERNEL_INITS, MLP, init_variables
from keskar_repro.training.objective import cross_entropy, scale_pixels, split_metrics
from keskar_repro.training.reparam import mlp_layers

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


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(init_key, shuffle_key) of a seed; SB and LB runs with the same seed share init_key."""
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    return init_key, shuffle_key


def initial_state(config: TrainConfig, variables: dict | None = None) -> TrainState:
    """`variables` ({"params", "batch_stats"}; default: the seed's initial point) with a fresh
    Adam state at the config's learning rate."""
    if variables is None:
        variables = init_variables(config.model(), seed_keys(config.seed)[0])
    params = jax.tree_util.tree_map(jnp.asarray, variables["params"])
    batch_stats = jax.tree_util.tree_map(jnp.asarray, variables["batch_stats"])
    return TrainState(params, batch_stats, config.optimizer().init(params))


def stacked_initial_state(
    configs: Sequence[TrainConfig], variables: Sequence[dict | None] | None = None
) -> TrainState:
    """The initial states of `configs` stacked along a leading run axis."""
    variables = list(variables or [None] * len(configs))
    states = [initial_state(c, v) for c, v in zip(configs, variables, strict=True)]
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *states)


def make_epoch_fn(config: TrainConfig, n_train: int) -> Callable:
    """`epoch(state, x_uint8, y, shuffle_key, epoch) -> (state, (mean_loss, mean_acc))`.

    floor(n_train / batch_size) steps in one `lax.scan`; pure and jit-able. A step is one Adam
    update on the batch loss, or with `prox_steps` = m > 0 (conservative training) m Adam updates
    on the batch's proximal sub-problem, compiled as an inner `lax.scan` (module docstring).
    """
    model, optimizer, batch = config.model(), config.optimizer(), config.batch_size
    steps = n_train // batch
    if steps < 1:
        raise UserError(
            f"batch_size={batch} exceeds the {n_train} training examples; use a smaller batch"
        )

    def loss_and_stats(params, batch_stats, xb, yb):
        logits, updates = model.apply(
            {"params": params, "batch_stats": batch_stats},
            scale_pixels(xb),
            use_running_average=False,
            mutable=["batch_stats"],
        )
        loss = cross_entropy(logits, yb).mean()
        accuracy = jnp.mean(jnp.argmax(logits, -1) == yb)
        return loss, (updates["batch_stats"], accuracy)

    grad_fn = jax.value_and_grad(loss_and_stats, has_aux=True)

    def adam_step(state: TrainState, xb, yb, anchor=None):
        (loss, (batch_stats, accuracy)), grads = grad_fn(state.params, state.batch_stats, xb, yb)
        if anchor is not None:  # gradient of (lambda / 2) ||x - x_k||^2
            grads = jax.tree_util.tree_map(
                lambda g, p, a: g + config.prox_lambda * (p - a), grads, state.params, anchor
            )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, batch_stats, opt_state), (loss, accuracy)

    def proximal_step(state: TrainState, xb, yb):
        """`prox_steps` Adam iterations on f_B(x) + (lambda/2)||x - x_k||^2, x_k = the params
        at the start of the step; the reported loss is f_B(x_k)."""
        anchor = state.params
        state, (losses, accuracies) = jax.lax.scan(
            lambda s, _: adam_step(s, xb, yb, anchor), state, None, length=config.prox_steps
        )
        return state, (losses[0], accuracies[0])

    update = proximal_step if config.prox_steps else adam_step

    def epoch(state: TrainState, x_uint8, y, shuffle_key, epoch_index):
        def step(state: TrainState, idx):
            return update(state, shard_examples(x_uint8[idx]), shard_examples(y[idx]))

        perm = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch_index), n_train)
        batches = perm[: steps * batch].reshape((steps, batch))
        state, (losses, accuracies) = jax.lax.scan(step, state, batches)
        return state, (losses.mean(), accuracies.mean())

    return epoch


def runs_epoch_fn(config: TrainConfig, n_runs: int, n_train: int) -> Callable:
    """`epochs(state, x_uint8, y, shuffle_keys, epoch) -> (state, (mean_losses, mean_accs))`:
    one epoch of `n_runs` runs whose states and shuffle keys are stacked along a leading run
    axis, vmapped over runs; a lone run (n_runs = 1) runs unbatched, so its matmuls have no
    run axis. Pure and jit-able; the training loop and the benchmarks compile this."""
    epoch_fn = make_epoch_fn(config, n_train)
    if n_runs > 1:
        return jax.vmap(epoch_fn, in_axes=(0, None, None, 0, None))

    def lone(state, x_uint8, y, shuffle_keys, epoch_index):
        single = jax.tree_util.tree_map(lambda leaf: leaf[0], state)
        new, metrics = epoch_fn(single, x_uint8, y, shuffle_keys[0], epoch_index)
        return jax.tree_util.tree_map(lambda leaf: leaf[None], new), tuple(m[None] for m in metrics)

    return lone


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


def default_runs_per_program() -> int | None:
    """How many runs of one shape share a compiled program unless told otherwise: 1 on a CPU,
    where vmapping F1 runs measured slower than training them one after another
    (benchmarks/README.md), and all of them (None) on a GPU/TPU. Every script and
    `runs.get_or_train` use this one default."""
    return 1 if jax.default_backend() == "cpu" else None


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


def _compiled_epoch(configs: list[TrainConfig], x_tr, y_tr, x_te, y_te) -> Callable:
    """The jitted `(state, active, epoch) -> (state, metrics, norms)`: one epoch of every run
    (frozen where not active), then the exact train and test loss and accuracy of each, and
    its kernels' Frobenius norms (`_kernel_norms`)."""
    config, n_train = configs[0], int(x_tr.shape[0])
    epochs = runs_epoch_fn(config, len(configs), n_train)
    evaluate = jax.vmap(make_eval_fn(config), in_axes=(0, 0, None, None))
    shuffle_keys = jnp.stack([seed_keys(c.seed)[1] for c in configs])

    @jax.jit
    def run_epoch(state, active, epoch_index):
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
    data = [replicate(x_train), replicate(np.asarray(y_train, np.int32))]
    data += [replicate(x_test), replicate(np.asarray(y_test, np.int32))]
    run_epoch = _compiled_epoch(configs, *data)
    initial = stacked_initial_state(configs, initial_variables)
    loop = checkpoint.load(initial) if checkpoint is not None else None

    def snapshot(epoch: int) -> None:
        if on_snapshot is not None and epoch in snapshot_epochs:
            on_snapshot(epoch, [loop.variables(i) for i in range(len(configs))])

    if loop is None:
        loop = LoopState.start(initial)
        snapshot(0)
    bar = _progress_bar(
        config.epochs, loop.epoch, f"train B={config.batch_size} runs={len(configs)}", progress
    )
    while loop.epoch < config.epochs and loop.active.any():
        t0 = time.perf_counter()
        loop.state, metrics, norms = run_epoch(loop.state, jnp.asarray(loop.active), loop.epoch)
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
