"""Throughput of one F1 training epoch, as a ratio to the FLOP bound of this machine.

    python -m benchmarks.train_throughput --dataset fashion_mnist --batch-size 256 --epochs 5

FLOP count of one epoch (Dense layers only; batch norm, ReLU, softmax and Adam are elementwise
and under 1% of it): with F = 2 * sum_l (d_{l-1} * d_l) the forward FLOPs of one example
(d = 784, 512 x 5, 10), a training step costs F (forward) + F (weight gradients) + F - 2*784*512
(input gradients, none for the input layer) per example, so

    epoch_flops = steps * batch_size * (3 F - 2 * 784 * 512),   steps = floor(N / batch_size).

flop_bound_seconds = epoch_flops / (measured jitted float32 matmul FLOP/s), and
flop_bound_ratio = median epoch seconds / flop_bound_seconds (1.0 is the hardware limit).
The epoch is the compiled training call alone (no evaluation). The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.hardware import device_description, matmul_flops_per_second
from keskar_repro.data import load
from keskar_repro.models import INPUT_DIM, matmul_flops_per_example
from keskar_repro.train import TrainConfig, init_state, make_epoch_fn, seed_keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs (after compiling)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds trained together (vmap)")
    args = parser.parse_args()

    data = load(args.dataset)
    config = TrainConfig(dataset=args.dataset, batch_size=args.batch_size)
    n_train = data.n_train
    x, y = jax.device_put(data.x_train), jax.device_put(data.y_train.astype(np.int32))
    seeds = list(range(args.seeds))
    states = [init_state(TrainConfig(batch_size=args.batch_size, seed=s)) for s in seeds]
    keys = jnp.stack([seed_keys(s)[1] for s in seeds])
    epoch_fn = make_epoch_fn(config, n_train)
    if args.seeds == 1:
        state, key = states[0], keys[0]
        run = jax.jit(lambda s, e: epoch_fn(s, x, y, key, e))
    else:
        state = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states)
        vmapped = jax.vmap(epoch_fn, in_axes=(0, None, None, 0, None))
        run = jax.jit(lambda s, e: vmapped(s, x, y, keys, e))

    t0 = time.perf_counter()
    state, metrics = jax.block_until_ready(run(state, 0))
    compile_seconds = time.perf_counter() - t0  # compile + first epoch
    times = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        state, metrics = jax.block_until_ready(run(state, epoch))
        times.append(time.perf_counter() - t0)
    rate = matmul_flops_per_second()

    steps = n_train // args.batch_size
    per_example = 3 * matmul_flops_per_example(config.model()) - 2 * INPUT_DIM * config.hidden[0]
    epoch_flops = args.seeds * steps * args.batch_size * per_example
    median = statistics.median(times)
    result = {
        "dataset": args.dataset,
        "batch_size": args.batch_size,
        "n_train": n_train,
        "seeds": args.seeds,
        "epochs_timed": args.epochs,
        "epoch_seconds_median": median,
        "epoch_seconds_min": min(times),
        "epoch_seconds_max": max(times),
        "samples_per_second": args.seeds * steps * args.batch_size / median,
        "compile_seconds": compile_seconds - median,
        "epoch_gflop": epoch_flops / 1e9,
        "matmul_gflops": rate / 1e9,
        "flop_bound_seconds": epoch_flops / rate,
        "flop_bound_ratio": median / (epoch_flops / rate),
        "device": device_description(),
        "final_minibatch_loss": float(np.mean(metrics[0])),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
