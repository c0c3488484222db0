"""What the collectives of a multi-process job cost: the same F1 work on 1 process x 2 devices,
2 processes x 1 device, and 1 process x 1 device (no collectives at all).

    python -m benchmarks.collectives                              # mnist10k, 8,000 images
    python benchmarks/collectives.py --n-train 2000 --repeats 1   # a smoke run

Each layout runs this file with --worker in fresh processes: one process with XLA's forced
host device count 2 (or 1), or two processes started by `keskar_repro.devices.launch` with one CPU
device each, joined through JAX's distributed runtime (gloo collectives over TCP on
127.0.0.1). In every layout the work is the package's own: one training epoch of F1 on the
first --n-train images of --dataset at batch 256 and at the LB batch (10% of the images), as
`train.runs_epoch_fn` compiles it, and one value-and-gradient of the exact full-split objective
(`objective.make_loss_fn`); each timed --repeats times after a compiling call (median, min-max).
With 2 devices XLA splits every batch over them and all-reduces the batch-norm statistics and
the gradient: inside one process through shared memory, across processes through gloo. Both
layouts share this machine's 2 cores, so 2 devices are not faster than 1 here; the comparison
that matters is 2 x 1 against 1 x 2, the price of going through the network stack. Prints a
markdown table, then one JSON record (`common.record`); the measured numbers are in
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

LAYOUTS = {  # name: (processes, devices per process)
    "1 process x 1 device": (1, 1),
    "1 process x 2 devices": (1, 2),
    "2 processes x 1 device": (2, 1),
}


def worker(args) -> dict:
    """The timings of this process's layout (run with --worker, in every process of it)."""
    from keskar_repro.devices.distributed import initialize_from_env

    initialize_from_env()
    import jax

    from benchmarks.common import epoch_runner, load_images, spread, timed
    from keskar_repro.devices.parallel import replicate
    from keskar_repro.training.models import f1, init_variables
    from keskar_repro.training.objective import make_loss_fn
    from keskar_repro.training.train import TrainConfig

    name, x, y, _, _ = load_images(args.dataset, args.n_train, 0)
    x_dev, y_dev = replicate(x), replicate(y)
    rows = {}
    for batch in (256, len(y) // 10):
        config = TrainConfig(dataset=name, batch_size=batch, epochs=1)
        first, times = timed(epoch_runner(config, 1, x_dev, y_dev), args.repeats)
        rows[f"epoch B={batch}"] = {**spread(times), "first": first}
    model = f1()
    variables = init_variables(model, jax.random.key(0))
    loss_fn = make_loss_fn(model, variables["batch_stats"], x, y)
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    first, times = timed(lambda: value_and_grad(variables["params"]), args.repeats)
    rows["objective value+grad"] = {**spread(times), "first": first}
    return {
        "dataset": name,
        "n_train": len(y),
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "rows": rows,
    }


def run_layout(processes: int, devices: int, argv: list[str]) -> dict:
    """The worker's record of process 0 of one layout, each process a fresh interpreter."""
    from keskar_repro.devices import launch

    command = [str(Path(__file__).resolve()), "--worker", *argv]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "process-0.out"
        with open(out, "w") as handle:
            if processes == 1:
                env = launch.forced_devices_env(devices)
                run = subprocess.run([sys.executable, *command], env=env, stdout=handle)
                status = run.returncode
            else:
                status = launch.launch(command, processes, devices_per_process=devices,
                                       timeout=1800, log_dir=tmp, stdout=handle)  # fmt: skip
        text = out.read_text()
    if status:
        raise RuntimeError(f"layout {processes} x {devices} failed ({status}):\n{text[-2000:]}")
    return json.loads(text.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist10k", help="a keskar_repro.data name, or random")
    p.add_argument("--n-train", type=int, default=8000, help="images in each epoch and objective")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per row")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    passed = ["--dataset", args.dataset, "--n-train", str(args.n_train)]
    passed += ["--repeats", str(args.repeats)]
    if args.worker:
        result = worker(args)
        from keskar_repro.devices.distributed import is_primary

        if is_primary():
            print(json.dumps(result), flush=True)
        return 0

    from benchmarks.common import markdown_table, record

    layouts = {name: run_layout(*shape, passed) for name, shape in LAYOUTS.items()}
    reference = layouts["1 process x 2 devices"]["rows"]
    header = ["layout", *(f"{row} s (min-max)" for row in reference)]
    header.append("x of 1 process x 2 devices")
    table = []
    for name, result in layouts.items():
        rows = result["rows"]
        cells = [f"{r['seconds']:.3g} ({r['min']:.3g}-{r['max']:.3g})" for r in rows.values()]
        ratios = [rows[k]["seconds"] / reference[k]["seconds"] for k in rows]
        table.append([name, *cells, " / ".join(f"{r:.2f}" for r in ratios)])
    first = next(iter(layouts.values()))
    print(f"{first['dataset']}, {first['n_train']} images, median of {args.repeats} calls")
    print(markdown_table(header, table))
    print(json.dumps(record("collectives", argv, layouts=layouts)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
