"""How long the documentation site takes to build here, and its tutorial to run.

    python benchmarks/docs_build.py [--out benchmarks/docs_build_cpu.json]

Times, each from scratch in a temporary folder (no Sphinx environment, no notebook cache):

- `tutorial`: docs/tutorials/first-gap.md converted to a script by jupytext and run in a fresh
  Python process (what tests/test_docs_site.py does, in-process);
- `full_build`: `python -m sphinx -E -W -b html docs <tmp>/html`, the tutorial executed;
- `build_no_execution`: the same with `-D nb_execution_mode=off` (the test suite's build).

Writes one JSON with the three wall times, the commands and the environment (versions, device,
host CPU, core count); docs/getting-started.md and the tutorial render their runtimes from it,
and tests/test_docs_site.py checks docs/README.md's against it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout

from keskar_repro.store.files import environment, write_json  # noqa: E402

TUTORIAL = REPO / "docs" / "tutorials" / "first-gap.md"


def timed(command: list[str], env: dict[str, str]) -> float:
    """Seconds `command` took; its output and a CalledProcessError if it failed."""
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        print(done.stdout[-5000:], done.stderr[-5000:], sep="\n", file=sys.stderr)
        done.check_returncode()
    return time.perf_counter() - t0


def _record(
    started: str, load: float, tutorial: float, full_seconds: float, off_seconds: float
) -> dict:
    return {
        "command": "python benchmarks/docs_build.py",
        "started": started,
        "tutorial": {
            "command": "jupytext --to py docs/tutorials/first-gap.md, then python first-gap.py",
            "wall_seconds": tutorial,
        },
        "full_build": {
            "command": "python -m sphinx -E -W -b html docs docs/_build/html",
            "wall_seconds": full_seconds,
        },
        "build_no_execution": {
            "command": "python -m sphinx -E -W -b html -D nb_execution_mode=off docs <out>",
            "wall_seconds": off_seconds,
        },
        # other jobs on the host slow every timing here: their load when the timing started
        "load_average_at_start": load,
        "environment": {**environment(), "cpu_count": os.cpu_count()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "benchmarks" / "docs_build_cpu.json"))
    args = p.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    python = sys.executable
    started, load = time.strftime("%Y-%m-%dT%H:%M:%S%z"), os.getloadavg()[0]
    # the pages render from this file, so the timed builds need one with every key: a
    # provisional record (zeros) stands in until the measured one replaces it
    write_json(args.out, {"provisional": True, **_record(started, load, 0.0, 0.0, 0.0)})
    with tempfile.TemporaryDirectory() as tmp:
        import jupytext

        script = Path(tmp) / "first_gap.py"
        script.write_text(jupytext.writes(jupytext.read(TUTORIAL), fmt="py:percent"))
        tutorial = timed([python, str(script)], env)
        full = ["-m", "sphinx", "-E", "-W", "-b", "html", "docs", f"{tmp}/full/html"]
        full_seconds = timed([python, *full], env)
        off = ["-m", "sphinx", "-E", "-W", "-b", "html", "-D", "nb_execution_mode=off", "docs"]
        off_seconds = timed([python, *off, f"{tmp}/off/html"], env)
    record = _record(started, load, tutorial, full_seconds, off_seconds)
    write_json(args.out, record)
    print(json.dumps({k: v for k, v in record.items() if k != "environment"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
