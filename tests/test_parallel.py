"""Data parallelism (parallel.py): 1 and 4 devices compute the same training, objective and
parametric path. The 4 devices are CPU devices forced by XLA_FLAGS in a subprocess."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

PROGRAM = r"""
import dataclasses, json, sys
import jax, numpy as np
from keskar_repro import parallel
from keskar_repro.data import load
from keskar_repro.interpolation import evaluate_path
from keskar_repro.objective import make_loss_fn
from keskar_repro.train import TrainConfig, train_runs

d = load("mnist10k")
x, y, xt, yt = d.x_train[:2000], d.y_train[:2000], d.x_test[:400], d.y_test[:400]
config = TrainConfig(batch_size=200, epochs=2, hidden=(64, 64), eval_chunk_size=1000)
runs = train_runs([config, dataclasses.replace(config, seed=1)], x, y, xt, yt, progress=False)
loss_fn = make_loss_fn(config.model(), runs[0].batch_stats, x, y, chunk_size=1000)
value, grad = jax.value_and_grad(loss_fn)(runs[0].params)
hlo = loss_fn.lower(runs[0].params).compile().as_text()
variables = [{"params": r.params, "batch_stats": r.batch_stats} for r in runs]
alphas = [0.0, 0.5, 1.5]
path = evaluate_path(config.model(), *variables, alphas, {"train": (x, y)}, chunk_size=1000)
flat = lambda tree: {k: {n: np.asarray(a).ravel().tolist() for n, a in v.items()}
                     for k, v in tree.items()}
print(json.dumps({
    "devices": parallel.device_count(),
    "all_reduce": "all-reduce" in hlo,
    "objective": float(value),
    "grad": {k: v["kernel"][:50] for k, v in flat(grad).items() if "Dense" in k},
    "history": [r.history["train_loss"] for r in runs],
    "params": [flat(r.params) for r in runs],
    "path": path["train_loss"].tolist(),
}))
"""

# Dense layers followed by batch norm: their bias cannot change the output, so its gradient is
# rounding noise, and a different summation order (4 devices) changes that noise; Adam turns it
# into steps of +-lr. They are left out of the comparison (as in test_train.py).
PRE_BN_BIAS = ("Dense_0", "Dense_1")


def run_on(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def one_and_four():
    return run_on(1), run_on(4)


def test_four_devices_really_split_the_work(one_and_four):
    one, four = one_and_four
    assert (one["devices"], four["devices"]) == (1, 4)
    assert four["all_reduce"] and not one["all_reduce"]


def test_training_on_four_devices_equals_one(one_and_four):
    one, four = one_and_four
    np.testing.assert_allclose(four["history"], one["history"], rtol=1e-5)
    for run_1, run_4 in zip(one["params"], four["params"], strict=True):
        for layer, leaves in run_1.items():
            for name, values in leaves.items():
                if layer in PRE_BN_BIAS and name == "bias":
                    continue
                np.testing.assert_allclose(run_4[layer][name], values, rtol=1e-4, atol=1e-5)


def test_objective_and_path_on_four_devices_equal_one(one_and_four):
    one, four = one_and_four
    assert four["objective"] == pytest.approx(one["objective"], rel=1e-6)
    for layer, values in one["grad"].items():
        np.testing.assert_allclose(four["grad"][layer], values, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(four["path"], one["path"], rtol=1e-6)


ONE_DEVICE_PROGRAM = r"""
import jax, jax.numpy as jnp
from keskar_repro import parallel
x = jnp.ones((6, 3))
assert len(jax.devices()) == 1, jax.devices()
assert parallel.device_count() == 1 and parallel.data_mesh() is None
assert parallel.shard_examples(x) is x
print("ok")
"""


def test_one_device_is_untouched():
    # In a subprocess on one CPU device: this process may see several (a forced device count in
    # XLA_FLAGS, or several accelerators), and JAX's device count is fixed at its start.
    env = dict(os.environ)
    flags = [
        flag
        for flag in env.pop("XLA_FLAGS", "").split()
        if not flag.startswith("--xla_force_host_platform_device_count")
    ]
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", ONE_DEVICE_PROGRAM],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "ok"
