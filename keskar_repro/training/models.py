"""The paper's multilayer perceptrons (F1 and its width/depth variants) as Flax modules.

F1 (Keskar et al. 2017, Table 1) is 784 -> 5 x [Dense(512) -> BatchNorm -> ReLU] -> Dense(10).
The paper does not say where batch norm sits; we use the common reading Dense -> BN -> ReLU with
no batch norm on the output layer. With a bias on every Dense layer and a scale and an offset on
every BatchNorm, F1 has

    784*512 + 512 + 4*(512*512 + 512) + 512*10 + 10 + 5*2*512 = 1,462,794

trainable parameters. The network returns logits; the softmax lives in the loss.

With batch statistics (training, and the "batch" and "full" evaluation policies of
keskar_repro.training.objective) the bias of each hidden Dense layer is functionally inert: batch
norm subtracts the batch mean, which contains the bias, so the loss does not depend on it and its
exact gradient is zero. The computed gradient is rounding noise, which Adam's normalisation
turns into steps of about +-lr, so these biases drift during training without changing the
network under those policies. Under the "running" policy (use_running_average=True) they are not
inert: the subtracted running mean is an average of minibatch means computed with earlier
parameters (biases included), so it follows the current bias only with a lag, and changing a
bias by d shifts that unit's batch-norm output by scale * d / sqrt(var + eps). The biases are
kept so that the parameter count matches the usual F1 ports.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

F1_HIDDEN: tuple[int, ...] = (512,) * 5
# Dense kernel initialisers. "glorot_uniform": uniform in +-sqrt(6 / (fan_in + fan_out)), the
# default of Keras 1's Dense, which the authors' code used ("uniformly distributed random
# starting points"); "lecun_normal": Flax's default, a truncated normal of variance 1 / fan_in,
# which this package used before (runs saved then carry it).
KERNEL_INITS = {
    "glorot_uniform": nn.initializers.glorot_uniform(),
    "lecun_normal": nn.initializers.lecun_normal(),
}
N_CLASSES = 10
INPUT_DIM = 28 * 28


class GhostBatchNorm(nn.Module):
    """Batch norm over virtual ("ghost") batches (Hoffer et al. 2017): in training mode the
    batch of n examples is cut, in order, into ceil(n / ghost_batch) virtual batches of
    `ghost_batch` (the last one shorter where ghost_batch does not divide n), and each is
    normalised with its own mean and (biased) variance; the running averages move as
    nn.BatchNorm's would, from the batch's mean of the virtual means (the batch mean) and the
    count-weighted mean of the virtual variances. With use_running_average, and in training mode
    when ghost_batch >= n (one virtual batch), it is nn.BatchNorm: the same variables ("scale",
    "bias"; batch_stats "mean", "var") and the same values up to rounding."""

    ghost_batch: int
    momentum: float = 0.99
    epsilon: float = 1e-3

    @nn.compact
    def __call__(self, x: jax.Array, *, use_running_average: bool) -> jax.Array:
        d = x.shape[-1]
        mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((d,), jnp.float32))
        var = self.variable("batch_stats", "var", lambda: jnp.ones((d,), jnp.float32))
        scale = self.param("scale", nn.initializers.ones, (d,))
        bias = self.param("bias", nn.initializers.zeros, (d,))
        if use_running_average:
            y = (x - mean.value) * jax.lax.rsqrt(var.value + self.epsilon)
            return y * scale + bias
        n, g = x.shape[0], min(self.ghost_batch, x.shape[0])
        groups = -(-n // g)
        counts = np.full(groups, g, np.float32)
        counts[-1] = n - (groups - 1) * g
        xg = jnp.pad(x, ((0, groups * g - n), (0, 0))).reshape(groups, g, d)
        g_mean = xg.sum(axis=1) / counts[:, None]
        g_var = jnp.maximum((xg * xg).sum(axis=1) / counts[:, None] - g_mean * g_mean, 0.0)
        y = (xg - g_mean[:, None]) * jax.lax.rsqrt(g_var[:, None] + self.epsilon)
        if not self.is_initializing():
            w = jnp.asarray(counts / n)
            m = self.momentum
            mean.value = m * mean.value + (1 - m) * (w @ g_mean)
            var.value = m * var.value + (1 - m) * (w @ g_var)
        return y.reshape(groups * g, d)[:n] * scale + bias


class MLP(nn.Module):
    """Dense -> BatchNorm -> ReLU blocks, then a Dense output layer (logits).

    `hidden` lists the widths of the hidden layers (F1: five layers of 512). `bn_momentum` is the
    decay of the batch-norm running averages (Flax's and Keras' default, 0.99); `bn_epsilon`
    is added to the variance (Keras 1's default, 1e-3). `kernel_init` names the initialiser of
    every Dense kernel (`KERNEL_INITS`); biases and BN offsets start at 0, BN scales at 1.
    `ghost_batch` > 0 puts `GhostBatchNorm` in place of each batch norm (same variable names).
    """

    hidden: Sequence[int] = F1_HIDDEN
    n_classes: int = N_CLASSES
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    kernel_init: str = "glorot_uniform"
    ghost_batch: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, *, use_running_average: bool) -> jax.Array:
        x = x.reshape((x.shape[0], -1))
        for i, width in enumerate(self.hidden):
            x = nn.Dense(width, kernel_init=KERNEL_INITS[self.kernel_init])(x)
            x = self._norm(i)(x, use_running_average=use_running_average)
            x = nn.relu(x)
        return nn.Dense(self.n_classes, kernel_init=KERNEL_INITS[self.kernel_init])(x)

    def _norm(self, i: int) -> nn.Module:
        if self.ghost_batch:
            return GhostBatchNorm(self.ghost_batch, self.bn_momentum, self.bn_epsilon,
                                  name=f"BatchNorm_{i}")  # fmt: skip
        return nn.BatchNorm(momentum=self.bn_momentum, epsilon=self.bn_epsilon)


def f1() -> MLP:
    """The paper's network F1."""
    return MLP(hidden=F1_HIDDEN)


def init_variables(model: MLP, key: jax.Array) -> dict:
    """Initial {'params', 'batch_stats'} of `model` (its kernel initialiser) from `key`."""
    return dict(model.init(key, jnp.zeros((1, INPUT_DIM), jnp.float32), use_running_average=True))


def count_params(params) -> int:
    """Number of scalars in a parameter pytree."""
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))


def matmul_flops_per_example(model: MLP) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward pass of one example through the Dense layers.

    Batch norm, ReLU and the softmax are elementwise and ignored; they are < 1% of the work.
    """
    widths = [INPUT_DIM, *model.hidden, model.n_classes]
    return sum(2 * a * b for a, b in zip(widths[:-1], widths[1:], strict=True))


def train_step_flops_per_example(model: MLP) -> int:
    """Multiply-add FLOPs of one training step (a value and gradient) per example: 3F - 2 d0 d1.

    With F = `matmul_flops_per_example(model)` and d0 x d1 the first Dense layer (784 x 512 for
    F1), a step costs F for the forward pass, F for the weight gradients and F - 2 d0 d1 for the
    input gradients of every layer but the first (nothing needs the gradient of the images).
    For F1, F = 2 (784*512 + 4*512*512 + 512*10) = 2,910,208, so a step is 7,927,808 FLOPs.
    Batch norm, ReLU, the softmax and the optimizer are elementwise and ignored, as above.
    """
    first_layer = model.hidden[0] if len(model.hidden) else model.n_classes
    return 3 * matmul_flops_per_example(model) - 2 * INPUT_DIM * first_layer
