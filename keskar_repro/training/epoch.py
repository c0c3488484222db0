"""One compiled training epoch of the paper's MLPs by a training method (Adam, the paper's, by
default; keskar_repro.training.methods), for one run or several vmapped together, and the
compiled evaluation; the protocol and its choices are in keskar_repro.training.train's
docstring."""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from keskar_repro.devices.parallel import shard_examples
from keskar_repro.errors import UserError
from keskar_repro.training.config import TrainConfig, TrainState
from keskar_repro.training.methods import get_method
from keskar_repro.training.models import init_variables
from keskar_repro.training.objective import cross_entropy, scale_pixels, split_metrics


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

    floor(n_train / batch_size) steps in one `lax.scan`; pure and jit-able. A step is the
    config's training method's (keskar_repro.training.methods: one Adam update on the batch
    loss by default) on a training-mode pass of `config.train_model()`.
    """
    model, batch = config.train_model(), config.batch_size
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
    update = get_method(config.method).step(config, grad_fn, config.optimizer(steps))

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
