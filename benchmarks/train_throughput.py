"""Throughput of one F1 training epoch, as a ratio to the FLOP bound of this machine.

    python -m benchmarks.train_throughput --dataset fashion_mnist --batch-size 256 --epochs 5
    python benchmarks/train_throughput.py --dataset random --n-train 6000 --batch-size 600 \
        --epochs 1

One epoch = floor(N / B) Adam steps of F1 (per seed) in one compiled call: the package's
`train.runs_epoch_fn`, jitted (benchmarks/common.py: `epoch_runner`), timed after the compiling
call, without the per-epoch evaluation. FLOPs of an epoch =
seeds x steps x B x `models.train_step_flops_per_example` (3F - 2 x 784 x 512 for F1, F being
the forward matmul FLOPs of one example); flop_bound_seconds = those FLOPs / the measured
jitted float32 matmul rate, and flop_bound_ratio = median epoch seconds / flop_bound_seconds
(1.0 is the hardware limit). --dataset random (or a dataset missing on this host) times random
images. The last line printed is JSON; the measured tables are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import gemm_bound  # noqa: E402
from benchmarks.common import (  # noqa: E402
    add_dataset_option,
    device_description,
    epoch_runner,
    load_images,
    matmul_flops_per_second,
    spread,
    timed,
)
from keskar_repro.training.models import train_step_flops_per_example  # noqa: E402
from keskar_repro.training.train import TrainConfig  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_option(parser)
    parser.add_argument("--n-train", type=int, default=60000, help="at most this many images")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs (after compiling)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds trained together (vmap)")
    parser.add_argument(
        "--peer",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time PyTorch's F1 step (benchmarks/torch_f1.py; the `peers` extra)",
    )
    parser.add_argument(
        "--gemm-bound",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the real bound: the best library per GEMM (benchmarks/gemm_bound.py)",
    )
    args = parser.parse_args(argv)

    name, x, y, _, _ = load_images(args.dataset, args.n_train, 0)
    n_train = len(x)
    config = TrainConfig(dataset=name, batch_size=args.batch_size)
    run = epoch_runner(config, args.seeds, jax.device_put(x), jax.device_put(y))
    last = []  # the latest epoch's (state, metrics)

    def epoch():
        last[:] = [run()]
        return last[0]

    first, times = timed(epoch, args.epochs)
    rate = matmul_flops_per_second()

    steps = n_train // args.batch_size
    per_example = train_step_flops_per_example(config.model())
    epoch_flops = args.seeds * steps * args.batch_size * per_example
    s = spread(times)
    result = {
        "data": name,
        "batch_size": args.batch_size,
        "n_train": n_train,
        "seeds": args.seeds,
        "epochs_timed": args.epochs,
        "epoch_seconds_median": s["seconds"],
        "epoch_seconds_min": s["min"],
        "epoch_seconds_max": s["max"],
        "samples_per_second": args.seeds * steps * args.batch_size / s["seconds"],
        "compile_seconds": first - s["seconds"],
        "epoch_gflop": epoch_flops / 1e9,
        "matmul_gflops": rate / 1e9,
        "flop_bound_seconds": epoch_flops / rate,
        "flop_bound_ratio": s["seconds"] / (epoch_flops / rate),
        "device": device_description(),
        "final_minibatch_loss": float(np.mean(last[0][1][0])),
    }
    if args.gemm_bound:  # seconds no library beats for the epoch's matmuls
        bound = gemm_bound.measure(args.batch_size, repeats=30)["step_bound_seconds"]
        real = args.seeds * steps * bound["best"]
        result.update(
            real_bound_seconds=real,
            real_bound_ratio=s["seconds"] / real,
            real_bound_by_library={k: args.seeds * steps * v for k, v in bound.items()},
        )
    if args.peer:
        result["torch"] = _torch_epoch(x, y, args)
        if result["torch"] and args.gemm_bound:
            result["torch"]["real_bound_ratio"] = result["torch"]["seconds"] / real
        if result["torch"]:
            result["torch_over_ours"] = result["torch"]["seconds"] / s["seconds"]
    print(json.dumps(result))
    return 0


def _torch_epoch(x, y, args) -> dict | None:
    """PyTorch's epoch at the same batch size (one seed; median of the same number of epochs
    after one warm-up), or None without the `peers` extra."""
    try:
        import torch
    except ImportError:
        return None
    from benchmarks.torch_f1 import epoch_runner as torch_runner

    runner = torch_runner(x, y, args.batch_size)
    runner()  # warm-up
    t = spread([_seconds(runner) for _ in range(args.epochs)])
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), **t}


def _seconds(fn) -> float:
    import time

    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
