"""What the precise cross-entropy costs: the full-split objective's value-and-gradient with
`objective.cross_entropy` against optax's logsumexp form, and the two losses alone.

    python -m benchmarks.cross_entropy_cost --dataset mnist10k
    python benchmarks/cross_entropy_cost.py --dataset mnist10k --repeats 1   # smoke run

Both objectives are the package's own `objective.make_loss_fn` (F1 at its initial point, BN
policy "batch"), once with the package's cross-entropy and once with
`optax.softmax_cross_entropy_with_integer_labels` put in its place; each time is the median of
--repeats calls of a jitted value-and-gradient after a compiling call. The losses alone are
timed on logits of shape (N, 10). Prints JSON lines; the measured numbers are in
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from benchmarks.common import device_description, spread, timed  # noqa: E402
from keskar_repro.data import load  # noqa: E402
from keskar_repro.training import objective  # noqa: E402
from keskar_repro.training.train import TrainConfig, initial_state  # noqa: E402

LOSSES = {
    "package (log1p form)": objective.cross_entropy,
    "optax (logsumexp(z) - z_y)": optax.softmax_cross_entropy_with_integer_labels,
}


def objective_seconds(loss, data, repeats: int) -> dict:
    """Value-and-gradient of the full-split objective with `loss` as its cross-entropy."""
    config = TrainConfig()
    state = initial_state(config)
    original, objective.cross_entropy = objective.cross_entropy, loss
    try:
        loss_fn = objective.make_loss_fn(config.model(), state.batch_stats, data.x_train,
                                         data.y_train)  # fmt: skip
        value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
        first, times = timed(lambda: value_and_grad(state.params), repeats)
    finally:
        objective.cross_entropy = original
    return spread(times)


def loss_seconds(loss, n: int, repeats: int) -> dict:
    logits = jax.random.normal(jax.random.key(0), (n, 10)) * 10
    labels = jax.random.randint(jax.random.key(1), (n,), 0, 10)
    grad = jax.jit(jax.value_and_grad(lambda z: jnp.mean(loss(z, labels))))
    return spread(timed(lambda: grad(logits), repeats)[1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist10k")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    data = load(args.dataset)
    for name, loss in LOSSES.items():
        row = {"device": device_description(), "dataset": data.name, "cross_entropy": name}
        row["objective_value_and_grad"] = objective_seconds(loss, data, args.repeats)
        row["loss_alone_value_and_grad"] = loss_seconds(loss, data.n_train, args.repeats)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
