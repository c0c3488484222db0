"""The training methods: one registry of optimizers and per-step rules, and the learning rate.

`METHODS[name]` is a `Method`: the optax optimizer it steps with and the rule of one training
step on a batch. A `TrainConfig` names its method (`TrainConfig.method`); keskar_repro.training
.epoch compiles the step into the epoch's `lax.scan`. The methods:

- "adam" (the default and the paper's): one Adam update on the batch gradient.
- "sgd": one update of SGD with heavy-ball momentum (`TrainConfig.momentum`; optax.sgd:
  v <- momentum v + g, x <- x - lr v).
- "sam": sharpness-aware minimisation (Foret et al. 2021) through `optax.contrib.sam` in opaque
  mode, Adam outer: with g = grad f_B(x), the ascent point x + rho g / ||g|| (rho =
  `TrainConfig.sam_rho`, ||.|| over every parameter), and the Adam update from x with
  grad f_B(x + rho g / ||g||). Batch norm: both passes are training-mode passes on B (batch
  statistics of B at the weights of that pass), and the running averages move once per step,
  from the pass at x: the ascent point is a probe, not an iterate.
- "conservative" (paper App. E.2, Table 7): `prox_steps` Adam iterations on the batch's
  proximal sub-problem f_B(x) + (prox_lambda / 2) ||x - x_k||^2 (keskar_repro.training.train's
  docstring gives the choices).

The learning rate (`learning_rate`) is the config's, times (B / lr_base_batch) under
lr_scaling="linear" (Goyal et al. 2017) or its square root under "sqrt" (Hoffer et al. 2017).
With warmup_epochs = w > 0 the steps of the first w epochs are scaled by a factor rising
linearly from 1 / k to 1, k that multiplier, so that the rate climbs from the unscaled one to
the scaled one (Goyal et al.'s gradual warm-up); the rate itself stays in the optimizer state
(`optax.inject_hyperparams`), so runs with different rates share one compiled program.
`regime_adapted` gives a run the number of updates of a run at another batch size (Hoffer et
al.'s regime adaptation). Ghost batch norm is the model's (`TrainConfig.ghost_batch`,
keskar_repro.training.models.GhostBatchNorm).

Adding a method is one `register(...)` call below and its test (tests/test_methods.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import optax

if TYPE_CHECKING:
    from keskar_repro.training.config import TrainConfig

LR_SCALINGS = ("none", "linear", "sqrt")  # how the learning rate follows the batch size
# grad_fn(params, batch_stats, xb, yb) -> ((loss, (new batch_stats, accuracy)), grads)
GradFn = Callable[..., Any]
# step(state, xb, yb) -> (state, (loss at the start of the step, accuracy))
Step = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Method:
    """One registered training method.

    name         the key in `METHODS` and the value of `TrainConfig.method`.
    description  what a step does, in one line.
    optimizer    (config, steps_per_epoch) -> the optax optimizer (`optimizer` adds warm-up).
    step         (config, grad_fn, optimizer) -> the step function of a batch.
    """

    name: str
    description: str
    optimizer: Callable[[TrainConfig], optax.GradientTransformation]
    step: Callable[[TrainConfig, GradFn, optax.GradientTransformation], Step]


METHODS: dict[str, Method] = {}


def register(name: str, description: str, optimizer: Callable) -> Callable:
    """Decorator: register the step rule below it as method `name` with its `optimizer`."""

    def add(step: Callable) -> Callable:
        if name in METHODS:
            raise ValueError(f"training method {name!r} is already registered")
        METHODS[name] = Method(name, description, optimizer, step)
        return step

    return add


def get_method(name: str) -> Method:
    """`METHODS[name]`; ValueError listing the registered names for an unknown one."""
    try:
        return METHODS[name]
    except KeyError:
        known = ", ".join(sorted(METHODS))
        raise ValueError(f"unknown training method {name!r}; registered: {known}") from None


def lr_multiplier(config: TrainConfig) -> float:
    """k: the factor lr_scaling applies to the config's learning rate at its batch size."""
    ratio = config.batch_size / config.lr_base_batch
    return {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[config.lr_scaling]


def learning_rate(config: TrainConfig) -> float:
    """The learning rate the run steps with after warm-up: learning_rate x `lr_multiplier`."""
    return config.learning_rate * lr_multiplier(config)


def regime_adapted(config: TrainConfig, reference_batch: int, n_train: int) -> TrainConfig:
    """`config` given as many updates as `config.epochs` epochs at `reference_batch` make
    (Hoffer et al. 2017's regime adaptation: an LB run trained for the SB run's number of
    steps): epochs = ceil(epochs x r), r = floor(n / reference_batch) / floor(n / batch_size),
    and each learning-rate drop epoch times r, rounded."""
    steps, reference = n_train // config.batch_size, n_train // reference_batch
    if not 1 <= reference_batch <= n_train or steps < 1:
        raise ValueError(
            f"regime adaptation needs batch sizes within the {n_train} training examples, got "
            f"{config.batch_size} and the reference {reference_batch}"
        )
    ratio = reference / steps
    drops = tuple(round(e * ratio) for e in config.lr_drops)  # the schedule stretched too
    return dataclasses.replace(config, epochs=math.ceil(config.epochs * ratio), lr_drops=drops)


def optimizer(config: TrainConfig, steps_per_epoch: int = 1) -> optax.GradientTransformation:
    """The config's method's optimizer; with weight_decay, the L2 term wd x params added to the
    gradient first (as torch.optim.SGD's weight_decay); with warm-up or learning-rate drops,
    its steps scaled by `_schedule` (whose state only counts steps, so `init` does not depend
    on steps_per_epoch). Without these, the method's optimizer itself."""
    parts = [get_method(config.method).optimizer(config)]
    if config.weight_decay:
        parts.insert(0, optax.add_decayed_weights(config.weight_decay))
    if config.warmup_epochs or config.lr_drops:
        parts.append(optax.scale_by_schedule(_schedule(config, steps_per_epoch)))
    return parts[0] if len(parts) == 1 else optax.chain(*parts)


def _schedule(config: TrainConfig, steps_per_epoch: int) -> Callable:
    """The factor on step `count` (0-based): the warm-up's, rising linearly from 1 / k to 1
    over warmup_epochs (k = `lr_multiplier`), times lr_drop_factor for each drop epoch passed
    (a drop after epoch e applies from step e x steps_per_epoch on)."""
    start = 1.0 / lr_multiplier(config)
    length = max(config.warmup_epochs * steps_per_epoch, 1)
    bounds = jnp.asarray([e * steps_per_epoch for e in config.lr_drops], jnp.int32)

    def factor(count):
        warm = start + (1.0 - start) * jnp.minimum(1.0, count / length)
        drops = jnp.sum(count >= bounds)  # 0 without drops
        return (warm if config.warmup_epochs else 1.0) * config.lr_drop_factor**drops

    return factor


def _adam(config: TrainConfig) -> optax.GradientTransformation:
    """Adam whose learning rate lives in the optimizer state (`inject_hyperparams`); the update
    is bit-identical to `optax.adam(learning_rate, b1, b2, eps)`."""
    adam = optax.inject_hyperparams(optax.adam, static_args=("b1", "b2", "eps", "eps_root"))
    return adam(learning_rate=learning_rate(config), b1=config.b1, b2=config.b2,
                eps=config.adam_eps)  # fmt: skip


def _sgd(config: TrainConfig) -> optax.GradientTransformation:
    sgd = optax.inject_hyperparams(optax.sgd, static_args=("momentum", "nesterov"))
    return sgd(learning_rate=learning_rate(config), momentum=config.momentum or None)


def _sam(config: TrainConfig) -> optax.GradientTransformation:
    """Adam outer, one normalised ascent step of length rho (SAM's own), opaque mode."""
    ascent = optax.chain(optax.contrib.normalize(), optax.sgd(config.sam_rho))
    return optax.contrib.sam(_adam(config), ascent, sync_period=2, opaque_mode=True)


def _state(params, batch_stats, opt_state):
    from keskar_repro.training.config import TrainState

    return TrainState(params, batch_stats, opt_state)


def _update(optimizer_, state, grads, batch_stats, **extra):
    updates, opt_state = optimizer_.update(grads, state.opt_state, state.params, **extra)
    return _state(optax.apply_updates(state.params, updates), batch_stats, opt_state)


def _plain(config: TrainConfig, grad_fn: GradFn, optimizer_) -> Step:
    """One optimizer update on the batch gradient."""

    def step(state, xb, yb):
        (loss, (batch_stats, accuracy)), grads = grad_fn(state.params, state.batch_stats, xb, yb)
        return _update(optimizer_, state, grads, batch_stats), (loss, accuracy)

    return step


register("adam", "one Adam update on the batch gradient (the paper's)", _adam)(_plain)
register("sgd", "one SGD update with heavy-ball momentum on the batch gradient", _sgd)(_plain)


@register("sam", "sharpness-aware minimisation: Adam with the gradient at x + rho g/||g||", _sam)
def _sam_step(config: TrainConfig, grad_fn: GradFn, optimizer_) -> Step:
    def step(state, xb, yb):
        (loss, (batch_stats, accuracy)), grads = grad_fn(state.params, state.batch_stats, xb, yb)

        def ascent_gradient(params, _):  # its running-average update is dropped
            return grad_fn(params, state.batch_stats, xb, yb)[1]

        new = _update(optimizer_, state, grads, batch_stats, grad_fn=ascent_gradient)
        return new, (loss, accuracy)

    return step


@register("conservative", "prox_steps Adam iterations on the proximal sub-problem", _adam)
def _proximal(config: TrainConfig, grad_fn: GradFn, optimizer_) -> Step:
    """`prox_steps` Adam iterations on f_B(x) + (lambda/2)||x - x_k||^2, x_k = the params at
    the start of the step; the reported loss is f_B(x_k)."""

    def inner(state, xb, yb, anchor):
        (loss, (batch_stats, accuracy)), grads = grad_fn(state.params, state.batch_stats, xb, yb)
        grads = jax.tree_util.tree_map(  # gradient of (lambda / 2) ||x - x_k||^2 added
            lambda g, p, a: g + config.prox_lambda * (p - a), grads, state.params, anchor
        )
        return _update(optimizer_, state, grads, batch_stats), (loss, accuracy)

    def step(state, xb, yb):
        anchor = state.params
        state, (losses, accuracies) = jax.lax.scan(
            lambda s, _: inner(s, xb, yb, anchor), state, None, length=config.prox_steps
        )
        return state, (losses[0], accuracies[0])

    return step
