"""One Hessian-vector product against one value-and-gradient of the same F1 objective.

    python -m benchmarks.hvp_cost                               # mnist10k, 8,000 images
    python benchmarks/hvp_cost.py --n-train 500 --repeats 1     # a smoke run

F1 at its initial point (`models.init_variables`, key 0) and its exact mean cross-entropy
over the first --n-train training images of --dataset (random images where it is not on this
host), `objective.make_loss_fn` with --bn-policy and --chunk-size (8,000 images: a chunk of
5,000 and a remainder of 3,000). Timed:

- value_and_grad: `jax.jit(jax.value_and_grad(loss_fn))`, what training and sharpness evaluate;
- hvp: `curvature.hvp_fn(loss_fn, params)` in a Gaussian direction: jvp of grad, forward over
  reverse, through the objective's chunk-by-chunk gradient.

After one compiling call of each, the two run alternately --repeats times, so that other work
on a shared machine slows both alike; each pair gives one ratio hvp / value_and_grad, of wall
time and of this process's CPU time (all its threads: `time.process_time`), which other
processes on a shared machine change much less than the wall time. Also
printed: each compiled program's memory as XLA accounts it (`memory.program_bytes`:
arguments, outputs, temporaries) and the ratio of their matmul FLOPs, (8F - 5 d0 d1) /
(3F - d0 d1) multiply-adds per example (F: a forward pass, d0 x d1: the first layer; 2.43 for
F1; keskar_repro/curvature.py). Prints a markdown table, then one JSON record
(`common.record`); the measured numbers are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import load_images, markdown_table, record, spread  # noqa: E402
from keskar_repro.devices.memory import program_bytes  # noqa: E402
from keskar_repro.measures import curvature  # noqa: E402
from keskar_repro.training.bn_policies import BN_POLICIES, DEFAULT_CHUNK_SIZE  # noqa: E402
from keskar_repro.training.models import INPUT_DIM, f1, init_variables, matmul_flops_per_example  # noqa: E402
from keskar_repro.training.objective import make_loss_fn  # noqa: E402


def flop_ratio(model) -> float:
    """Matmul multiply-adds of one forward-over-reverse HVP over those of one value-and-gradient,
    per example: (8F - 5 d0 d1) / (3F - d0 d1) (derivation in keskar_repro/curvature.py)."""
    forward = matmul_flops_per_example(model) // 2
    first = INPUT_DIM * model.hidden[0]
    return (8 * forward - 5 * first) / (3 * forward - first)


def seconds(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of fn(), synchronised."""
    t0, c0 = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist10k", help="a keskar_repro.data name, or random")
    p.add_argument("--n-train", type=int, default=8000, help="images in the objective")
    p.add_argument("--bn-policy", default="batch", choices=BN_POLICIES)
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    p.add_argument("--repeats", type=int, default=7, help="timed (value_and_grad, hvp) pairs")
    args = p.parse_args(argv)

    name, x, y, _, _ = load_images(args.dataset, args.n_train, 0)
    model = f1()
    variables = init_variables(model, jax.random.key(0))
    params = variables["params"]
    loss_fn = make_loss_fn(model, variables["batch_stats"], x, y, bn_policy=args.bn_policy,
                           chunk_size=args.chunk_size)  # fmt: skip
    rng = np.random.default_rng(1)
    direction = jax.tree_util.tree_map(
        lambda a: rng.standard_normal(a.shape).astype(a.dtype), params
    )

    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    hvp = curvature.hvp_fn(loss_fn, params)
    compile_s = {"value_and_grad": seconds(lambda: value_and_grad(params))[0]}
    compile_s["hvp"] = seconds(lambda: hvp(direction))[0]
    # XLA's memory account of both programs (the HVP's from curvature's compiled function,
    # already in JAX's cache after the call above)
    split = curvature._split(params)
    var, fixed = split.parts(params)
    hvp_program = curvature._hvp_compiled.lower(
        var, fixed, split.parts(direction)[0], loss_fn=loss_fn, split=split
    ).compile()
    memory = {
        "value_and_grad": program_bytes(value_and_grad.lower(params).compile()) / 1e9,
        "hvp": program_bytes(hvp_program) / 1e9,
    }

    calls = {"value_and_grad": lambda: value_and_grad(params), "hvp": lambda: hvp(direction)}
    times = {f"{c}_{clock}": [] for c in calls for clock in ("wall", "cpu")}
    for _ in range(args.repeats):  # alternately, so that a shared machine slows both alike
        for call, fn in calls.items():
            wall, cpu = seconds(fn)
            times[f"{call}_wall"].append(wall)
            times[f"{call}_cpu"].append(cpu)
    summary = {k: spread(v) for k, v in times.items()}
    for clock in ("wall", "cpu"):
        pairs = zip(times[f"hvp_{clock}"], times[f"value_and_grad_{clock}"], strict=True)
        times[f"ratio_{clock}"] = [h / v for h, v in pairs]
        summary[f"ratio_{clock}"] = spread(times[f"ratio_{clock}"])

    def cell(key: str, digits: int = 3) -> str:
        s = summary[key]
        return f"{s['seconds']:.{digits}g} ({s['min']:.{digits}g}-{s['max']:.{digits}g})"

    rows = [
        [call, cell(f"{call}_wall"), cell(f"{call}_cpu"), f"{compile_s[call]:.1f}",
         f"{memory[call]:.3f}"]
        for call in calls
    ]  # fmt: skip
    rows.append(["hvp / value_and_grad", cell("ratio_wall"), cell("ratio_cpu"), "",
                 f"matmul FLOPs: {flop_ratio(model):.2f}"])  # fmt: skip
    header = ["call", "wall s (min-max)", "CPU s (min-max)", "compile s", "program GB"]
    print(f"{name}, {len(y)} images, BN policy {args.bn_policy}, chunks of {args.chunk_size}, "
          f"median of {args.repeats} alternating pairs")  # fmt: skip
    print(markdown_table(header, rows))
    out = record(
        "hvp_cost",
        argv,
        dataset=name,
        n_train=len(y),
        bn_policy=args.bn_policy,
        chunk_size=args.chunk_size,
        repeats=args.repeats,
        summary=summary,
        times=times,
        compile_seconds=compile_s,
        program_gb=memory,
        matmul_flop_ratio=flop_ratio(model),
    )
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
