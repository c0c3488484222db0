"""XLA:CPU's options against an F1 training epoch: which of them move it toward the real bound.

    python -m benchmarks.xla_cpu_options --dataset fashion_mnist --batch-sizes 256,6000
    python -m benchmarks.xla_cpu_options --dataset random --n-train 6000 --batch-sizes 600 \
        --epochs 1 --options default,onednn

Each option of `OPTIONS` (XLA_FLAGS that route dots to oneDNN or XNNPACK, change the runtime,
the threading or the vector width; jaxlib 0.10.2 accepts each) is set in a fresh
process (XLA reads its flags once) that runs benchmarks/train_throughput.py without its peer:
the median epoch seconds, and the mean minibatch loss of the last epoch, which must equal the
default's up to float rounding for the option to be usable for the committed results. An option
this jaxlib rejects is reported as such. The table goes to benchmarks/README.md; the last line
printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from a checkout

from benchmarks.common import add_dataset_option, markdown_table, record, run_row_in_subprocess  # noqa: E402

KEPT = ("epoch_seconds_median", "epoch_seconds_min", "epoch_seconds_max", "final_minibatch_loss")
OPTIONS = {  # name -> XLA_FLAGS
    "default": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn_custom_call": "--xla_cpu_experimental_onednn_custom_call=true",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
    "no_thunk_runtime": "--xla_cpu_use_thunk_runtime=false",
    "single_thread_eigen": "--xla_cpu_multi_thread_eigen=false",
    "vector_width_512": "--xla_cpu_prefer_vector_width=512",
    "fast_math": "--xla_cpu_enable_fast_math=true",  # changes rounding: never for results
}


def measure(option: str, args) -> dict:
    """One option's epoch (a fresh process), or its error."""
    row = ["--dataset", args.dataset, "--n-train", str(args.n_train), "--epochs",
           str(args.epochs), "--no-peer", "--no-gemm-bound"]  # fmt: skip
    out = {}
    for batch in args.batch_sizes:
        try:
            r = _run([*row, "--batch-size", str(batch)], OPTIONS[option])
        except RuntimeError as err:
            return {"option": option, "flags": OPTIONS[option], "error": str(err)[-300:]}
        out[str(batch)] = {k: r[k] for k in KEPT}
    return {"option": option, "flags": OPTIONS[option], "batches": out}


def _run(argv: list[str], flags: str) -> dict:
    """benchmarks/train_throughput.py in a fresh process with XLA_FLAGS = flags."""
    return run_row_in_subprocess(
        "benchmarks.train_throughput", None, *argv, env={"XLA_FLAGS": flags}
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_option(parser)
    parser.add_argument("--n-train", type=int, default=60000)
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[256, 6000])  # fmt: skip
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per option")
    parser.add_argument("--options", default=",".join(OPTIONS), help="comma-separated")
    args = parser.parse_args(argv)
    results = [measure(o, args) for o in args.options.split(",")]
    base = next((r for r in results if r["option"] == "default" and "batches" in r), None)
    rows = []
    for r in results:
        if "error" in r:
            rows.append((r["option"], r["flags"], "rejected", "", ""))
            continue
        for batch, b in r["batches"].items():
            ref = base["batches"][batch] if base else None
            speed = f"{ref['epoch_seconds_median'] / b['epoch_seconds_median']:.2f}" if ref else ""
            same = abs(b["final_minibatch_loss"] - ref["final_minibatch_loss"]) if ref else None
            rows.append((r["option"], batch, f"{b['epoch_seconds_median']:.3f}", speed,
                         "" if same is None else f"{same:.1e}"))  # fmt: skip
    print(markdown_table(["option", "batch", "epoch s", "speed-up", "|loss - default|"], rows))
    print(json.dumps(record("xla_cpu_options", argv, results=results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
