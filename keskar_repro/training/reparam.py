"""Function-preserving reparametrisations of a models.MLP, its per-layer norms, and norm matching.

Dinh et al. 2017: a ReLU network has many parameter vectors for one function, and a sharpness
measured in the parameters can differ between them. This module owns the transforms of the
variables {"params": ..., "batch_stats": ...} of a `keskar_repro.training.models.MLP` (any hidden
widths) that keep its function, and what they move: the per-layer norms.

Layout and names (as Flax creates them in models.MLP; L = len(hidden)):

    x -> Dense_0 -> BatchNorm_0 -> ReLU -> ... -> Dense_{L-1} -> BatchNorm_{L-1} -> ReLU -> Dense_L

Dense_0 .. Dense_{L-1} are the hidden ("pre-BN") Dense layers, Dense_L the output layer;
BatchNorm_i has params scale gamma and offset ("bias") beta, and batch_stats mean m and var v.

Pre-BN rescaling (`rescale_pre_bn`): W_i, b_i -> c W_i, c b_i (c > 0), and under every BN
policy the statistics that normalise the unit scale with it: a chunk's (or the split's) mean
and variance of z = x W + b become c m and c^2 v ("batch", "full"), and the stored running
averages are rescaled to c m and c^2 v by the transform ("running"). With BN's epsilon eps,

    (c z - c m) / sqrt(c^2 v + eps) = (z - m) / sqrt(v + eps / c^2),

so the transformed network is EXACTLY the original one with BatchNorm_i's epsilon eps replaced
by eps / c^2. Each normalised activation u = (z - m) / sqrt(v + eps) of that layer is multiplied
by `bn_gain(v, c, eps)`,

    r = sqrt((v + eps) / (v + eps / c^2)),
    |r - 1| <= |r^2 - 1| = eps |1 - c^-2| / (v + eps c^-2) <= eps |1 - c^-2| / v,

with v the unit's variance under the policy (per chunk under "batch"). The function is thus
preserved only where v >> eps: models.MLP uses eps = bn_epsilon = 1e-3, so with c = 3 a unit of
variance 1 gets r = 1 + 4.4e-4 and one of variance 1e-3 gets r = sqrt(1.8) = 1.342; as c -> 0
every r -> 0 (the layer's output collapses to beta). A unit with v = 0 has u = 0 either way.

Last-BN rescaling (`rescale_last_bn_and_output`): gamma, beta of BatchNorm_{L-1} -> c gamma,
c beta and the output kernel W_L -> W_L / c (bias b_L unchanged). With h = ReLU(gamma u + beta),
ReLU(c a) = c ReLU(a) for c > 0 (positive homogeneity), so the logits c h (W_L / c) + b_L are
unchanged, EXACTLY, for every BN policy: u does not depend on gamma, beta, and no statistic is
taken after the last BN. In float arithmetic the loss moves by rounding only, and not at all for
c a power of 2 (every product is then exact, absent overflow and underflow).

Both need c > 0: for c < 0, BN and ReLU are not odd functions and the function changes.

Metric 2.1's box eps (|x_i| + 1) does not scale with a rescaled layer, so its sharpness moves;
adaptive sharpness (eta = 0, keskar_repro.measures.notions) has the box eps |x_i|, which maps onto
itself under any rescaling D: f(D(x + d)) = f'(x + d) with f' the eps / c^2 network above, so it
moves only by the difference between eps and eps / c^2 (exactly zero for the last-BN transform).

Norms (`layer_norms`): Frobenius ||A||_F = sqrt(sum_ij A_ij^2) or RMS ||A||_F / sqrt(size(A))
of every params leaf, in float64. `match_norms` rescales each hidden Dense layer (kernel and
bias together, pre-BN) so that its kernel has a target norm, e.g. an LB minimizer's to the SB
minimizer's norms; the output kernel can only be matched together with the last BN's scale and
offset (`include_output=True`), which moves the last BN's norms instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

__all__ = [
    "NORM_KINDS",
    "MLPLayers",
    "mlp_layers",
    "bn_gain",
    "rescale_pre_bn",
    "rescale_last_bn_and_output",
    "layer_norms",
    "match_norms",
]

NORM_KINDS: tuple[str, ...] = ("frobenius", "rms")
Variables = dict[str, Any]  # {"params": ..., "batch_stats": ...} of models.MLP


class MLPLayers(NamedTuple):
    """The module names of a models.MLP's params, in the order the input passes them.

    hidden       ("Dense_0", ..., "Dense_{L-1}"): the pre-BN Dense layers.
    batch_norms  ("BatchNorm_0", ..., "BatchNorm_{L-1}"): BatchNorm_i follows Dense_i.
    output       "Dense_L": the output layer (logits).
    """

    hidden: tuple[str, ...]
    batch_norms: tuple[str, ...]
    output: str

    def in_order(self) -> tuple[str, ...]:
        """Dense_0, BatchNorm_0, Dense_1, ..., BatchNorm_{L-1}, Dense_L."""
        pairs = [name for pair in zip(self.hidden, self.batch_norms, strict=True) for name in pair]
        return (*pairs, self.output)


def mlp_layers(params: Mapping[str, Any]) -> MLPLayers:
    """The layer names of a models.MLP params dict (module docstring); ValueError if its keys are
    not exactly Dense_0..Dense_L and BatchNorm_0..BatchNorm_{L-1} for some L >= 0."""
    n_bn = sum(1 for key in params if str(key).startswith("BatchNorm_"))
    layers = MLPLayers(
        hidden=tuple(f"Dense_{i}" for i in range(n_bn)),
        batch_norms=tuple(f"BatchNorm_{i}" for i in range(n_bn)),
        output=f"Dense_{n_bn}",
    )
    if set(params) != set(layers.in_order()):
        raise ValueError(f"not the params of a models.MLP: keys {sorted(map(str, params))}")
    return layers


def bn_gain(var: Any, c: float, epsilon: float = 1e-3) -> np.ndarray:
    """r = sqrt((var + eps) / (var + eps / c^2)): the factor by which `rescale_pre_bn(c)`
    multiplies a normalised activation of batch variance (or running variance) `var`, float64.

    Exactly the deviation of the pre-BN transform from an exact function-preserving one (module
    docstring); 1 for c = 1, -> sqrt(1 + eps / var) as c -> inf, -> 0 as c -> 0.
    """
    c = _check_factor(c)
    var = np.asarray(var, np.float64)
    return np.sqrt((var + epsilon) / (var + epsilon / c**2))


def _check_factor(c: Any, name: str = "c") -> float:
    """c as a float; ValueError unless it is finite and > 0 (ReLU is only positively
    homogeneous, and a norm to match must be positive)."""
    value = float(c)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={c!r} must be a finite number > 0")
    return value


def _check_variables(variables: Mapping[str, Any]) -> MLPLayers:
    if not isinstance(variables, Mapping) or not {"params", "batch_stats"} <= set(variables):
        raise ValueError("variables must be a {'params': ..., 'batch_stats': ...} dict")
    return mlp_layers(variables["params"])


def _hidden_name(layers: MLPLayers, layer: str | int) -> str:
    """The hidden Dense layer `layer` names ("Dense_i" or i); ValueError for any other layer."""
    name = f"Dense_{layer}" if isinstance(layer, int) and not isinstance(layer, bool) else layer
    if name not in layers.hidden:
        raise ValueError(
            f"layer={layer!r} is not a pre-BN Dense layer; those are {layers.hidden} (the output "
            f"layer {layers.output} moves only with the last BN: rescale_last_bn_and_output)"
        )
    return name


def _scaled(variables: Mapping[str, Any], factors: dict[tuple[str, str, str], float]) -> Variables:
    """A copy of variables with leaf [collection][module][leaf] multiplied by its factor (in the
    leaf's dtype); every other leaf is the same object. Plain dicts, whatever the input's."""
    out = {
        col: {mod: dict(leaves) for mod, leaves in tree.items()} for col, tree in variables.items()
    }
    for (col, mod, leaf), factor in factors.items():
        value = jnp.asarray(out[col][mod][leaf])
        out[col][mod][leaf] = value * jnp.asarray(factor, value.dtype)
    return out


def rescale_pre_bn(variables: Mapping[str, Any], layer: str | int, c: float) -> Variables:
    """New variables with the hidden Dense layer `layer` ("Dense_i" or i) rescaled by c > 0:
    its kernel and bias times c, and its BatchNorm_i's running mean times c and running var
    times c^2 (so that the "running" policy normalises the same way the batch policies do).

    The result is EXACTLY the original network with BatchNorm_i's epsilon eps replaced by
    eps / c^2, under every BN policy ("batch", "full", "running"), up to float rounding: each
    normalised activation of BatchNorm_i is multiplied by `bn_gain(v, c, eps)` =
    sqrt((v + eps) / (v + eps / c^2)), |gain - 1| <= eps |1 - c^-2| / v, v the unit's variance
    under the policy; eps = models.MLP.bn_epsilon = 1e-3. The function is preserved only where
    v >> eps (module docstring). ValueError for c <= 0 or for the output layer.
    """
    layers = _check_variables(variables)
    c = _check_factor(c)
    i = layers.hidden.index(_hidden_name(layers, layer))
    dense, bn = layers.hidden[i], layers.batch_norms[i]
    factors = {
        ("params", dense, "kernel"): c,
        ("params", dense, "bias"): c,
        ("batch_stats", bn, "mean"): c,
        ("batch_stats", bn, "var"): c * c,
    }
    return _scaled(variables, factors)


def rescale_last_bn_and_output(variables: Mapping[str, Any], c: float) -> Variables:
    """New variables with the last BatchNorm's scale and offset times c > 0 and the output
    kernel times 1 / c (output bias and every batch statistic unchanged).

    Exactly the same function under every BN policy, by ReLU(c a) = c ReLU(a) (module
    docstring); in float32 the loss moves by rounding only, and not at all when c is a power of
    2. ValueError for c <= 0 or for a network without hidden layers.
    """
    c = _check_factor(c)
    return _rescale_last_bn(variables, c, 1.0 / c)


def _rescale_last_bn(
    variables: Mapping[str, Any], bn_factor: float, kernel_factor: float
) -> Variables:
    """The last BN's scale and offset times bn_factor, the output kernel times kernel_factor
    (= 1 / bn_factor, given separately so that either can be the exact one)."""
    layers = _check_variables(variables)
    if not layers.batch_norms:
        raise ValueError("the network has no hidden layer, hence no last BatchNorm to rescale")
    bn = layers.batch_norms[-1]
    factors = {
        ("params", bn, "scale"): bn_factor,
        ("params", bn, "bias"): bn_factor,
        ("params", layers.output, "kernel"): kernel_factor,
    }
    return _scaled(variables, factors)


def _norm(leaf: Any, kind: str) -> float:
    a = np.asarray(leaf, np.float64)
    frobenius = float(np.sqrt(np.sum(a * a)))
    return frobenius if kind == "frobenius" else frobenius / math.sqrt(a.size)


def layer_norms(variables: Mapping[str, Any], kind: str = "frobenius") -> dict[str, float]:
    """{"Dense_0/kernel": norm, "Dense_0/bias": ..., "BatchNorm_0/scale": ...,
    "BatchNorm_0/bias": ..., ..., "Dense_L/bias": ...}: the norm of every params leaf, in layer
    order, as Python floats (JSON-ready), computed in float64.

    kind="frobenius": ||A||_F = sqrt(sum A_ij^2); kind="rms": ||A||_F / sqrt(size(A)), the
    root-mean-square entry (comparable between layers of different sizes). A rescaling by c
    multiplies both by c. `variables` is a {"params", "batch_stats"} dict or a bare params dict.
    """
    if kind not in NORM_KINDS:
        raise ValueError(f"kind={kind!r} is not one of {NORM_KINDS}")
    params = variables["params"] if "params" in variables else variables
    return {
        f"{module}/{leaf}": _norm(params[module][leaf], kind)
        for module in mlp_layers(params).in_order()
        for leaf in sorted(params[module])
    }


def _matching_factor(norms: dict[str, float], target_norms: Mapping[str, float], key: str) -> float:
    """target / current norm of leaf `key`; ValueError if either is missing, zero or not finite."""
    if key not in target_norms:
        raise ValueError(f"target_norms has no entry {key!r}")
    target = _check_factor(target_norms[key], f"target_norms[{key!r}]")
    return target / _check_factor(norms[key], f"the norm of {key}")


def match_norms(
    variables: Mapping[str, Any],
    target_norms: Mapping[str, float],
    *,
    kind: str = "frobenius",
    include_output: bool = False,
) -> tuple[Variables, dict[str, float]]:
    """(new variables, {"Dense_i": c_i}): every hidden Dense layer rescaled by
    c_i = target_norms["Dense_i/kernel"] / ||W_i|| (`rescale_pre_bn`: kernel, bias and running
    statistics), so that its kernel's `kind` norm is the target's (up to the rounding of c_i W_i
    in the kernel's dtype). `target_norms` is a `layer_norms(..., kind)` dict, e.g. of the SB
    minimizer when `variables` is the LB one; other entries are ignored.

    Each hidden layer's BN then uses the effective epsilon eps / c_i^2 (`rescale_pre_bn`): the
    function is preserved where the units' variances are >> eps.

    include_output=False (default): the output layer and every BN parameter are left as they
    are. include_output=True: the output kernel is matched too, by `rescale_last_bn_and_output`
    with c = 1 / k, k = target / ||W_L|| (kernel times k, the last BN's scale and offset times
    1 / k; exact), and factors["Dense_L"] = k is the output kernel's multiplier. The last BN's
    norms then differ from the target's: the output layer's norm can move only with them.
    """
    layers = _check_variables(variables)
    norms = layer_norms(variables, kind)
    factors = {
        dense: _matching_factor(norms, target_norms, f"{dense}/kernel") for dense in layers.hidden
    }
    out = dict(variables)
    for dense, c in factors.items():
        out = rescale_pre_bn(out, dense, c)
    if include_output:
        k = _matching_factor(norms, target_norms, f"{layers.output}/kernel")
        out = _rescale_last_bn(out, 1.0 / k, k)
        factors[layers.output] = k
    return out, factors
