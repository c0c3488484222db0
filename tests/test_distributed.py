"""Data parallelism across devices and processes (parallel.py, distributed.py, launch.py): 2
processes x 2 CPU devices compute what 1 device does, and (with `-m exhaustive`) what 1 process
x 4 devices does (training through the run store, the objective and its gradient, Metric 2.1, the
parametric path); a job writes one set of files and resumes after a kill. The processes run on
127.0.0.1 with a bounded timeout, started by keskar_repro.devices.launch; one-process jobs run in a
plain subprocess with a forced device count."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keskar_repro.devices import distributed, launch
from keskar_repro.errors import UserError

PROGRAM = r"""
import json, os, sys, time, types
from pathlib import Path
from keskar_repro.devices.distributed import initialize_from_env, process_index
initialize_from_env()
if os.environ.get("DIE_AFTER_FIRST_CHECKPOINT") and process_index() == 1:
    from keskar_repro.store.runs import GroupCheckpoint
    save = GroupCheckpoint.save
    def save_then_die(self, loop, done):
        save(self, loop, done)
        time.sleep(2)  # the primary writes its checkpoint meanwhile
        os._exit(7)
    GroupCheckpoint.save = save_then_die
import jax, numpy as np
from keskar_repro.devices import parallel
from keskar_repro.data import load
from keskar_repro.store.files import write_json
from keskar_repro.training.interpolation import evaluate_path
from keskar_repro.store.measurements import RunSharpness
from keskar_repro.training.objective import make_loss_fn
from keskar_repro.training.protocol import with_seeds
from keskar_repro.store.runs import get_or_train
from keskar_repro.training.train import TrainConfig

root, out = Path(sys.argv[1]), Path(sys.argv[2])
d = load("mnist10k")
small = types.SimpleNamespace(name="mnist10k", x_train=d.x_train[:800], y_train=d.y_train[:800],
                              x_test=d.x_test[:400], y_test=d.y_test[:400],
                              provenance=d.provenance)
config = TrainConfig(dataset="mnist10k", batch_size=200, epochs=2, hidden=(32, 32),
                     eval_chunk_size=400)
runs = get_or_train(with_seeds(config, [0, 1]), small, root=root, progress=False,
                    checkpoint_seconds=0)
loss_fn = make_loss_fn(config.model(), runs[0].batch_stats, small.x_train, small.y_train,
                       chunk_size=400)
value, grad = jax.value_and_grad(loss_fn)(runs[0].params)
hlo = loss_fn.lower(runs[0].params).compile().as_text()
meter = RunSharpness(runs[0], small, root)
phi = meter.measure(1e-3)
again = meter.measure(1e-3)  # read back from the cache the primary wrote
variables = [{"params": r.params, "batch_stats": r.batch_stats} for r in runs]
path = evaluate_path(config.model(), *variables, [0.0, 0.5, 1.5],
                     {"train": (small.x_train, small.y_train)}, chunk_size=400)
flat = lambda tree: {k: {n: np.asarray(a).ravel().tolist() for n, a in v.items()}
                     for k, v in tree.items()}
record = {
    "processes": jax.process_count(), "devices": parallel.device_count(),
    "all_reduce": "all-reduce" in hlo,
    "history": [r.history["train_loss"] for r in runs], "params": [flat(r.params) for r in runs],
    "objective": float(value),
    "grad": {k: v["kernel"][:50] for k, v in flat(grad).items() if "Dense" in k},
    "path": path["train_loss"].tolist(),
    "phi": phi["value"], "phi_again": again["value"], "nit": phi["nit"],
}
write_json(out / "result.json", record)  # the primary process only
(out / f"process-{process_index()}.json").write_text(json.dumps(record))
"""

# Dense layers followed by batch norm: their bias cannot change the output, so its gradient is
# rounding noise, and a different summation order (other devices) changes that noise; Adam turns
# it into steps of +-lr. They are left out of the comparison (as in test_train.py).
PRE_BN_BIAS = ("Dense_0", "Dense_1")


def _clean_env() -> dict:
    """The suite's environment without KESKAR_ settings (XLA_FLAGS' device count is replaced by
    launch.forced_devices_env; its other flags stay)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KESKAR_")}


def _job(root: Path, processes: int, env: dict | None = None, devices: int = 4) -> int:
    """PROGRAM as 1 process x `devices` devices or 2 processes x 2 devices, into root/runs and
    root/out."""
    (root / "out").mkdir(exist_ok=True)
    command = ["-c", PROGRAM, str(root / "runs"), str(root / "out")]
    env = {**_clean_env(), **(env or {})}
    with open(root / "process-0.log", "w") as log:
        if processes == 2:
            return launch.launch(command, 2, devices_per_process=2, timeout=600, log_dir=root,
                                 env=env, stdout=log)  # fmt: skip
        env = launch.forced_devices_env(devices, env)
        return subprocess.run([sys.executable, *command], env=env, stdout=log,
                              stderr=subprocess.STDOUT, timeout=600).returncode  # fmt: skip


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """{"single": 1 process x 1 device, "two": 2 processes x 2 devices}: (record, out, runs).
    The 2-process job is killed on process 1 after its first checkpoint and then started again,
    so it resumes (its first status and checkpoints are kept as "killed")."""
    done = {}
    root = tmp_path_factory.mktemp("two")
    status = _job(root, 2, {"DIE_AFTER_FIRST_CHECKPOINT": "1"})
    done["killed"] = (status, sorted(p.name for p in (root / "runs" / "checkpoints").iterdir()))
    done["two"] = _finished(root, 2, 2)
    done["single"] = _finished(tmp_path_factory.mktemp("single"), 1, 1)
    return done


@pytest.fixture(scope="module")
def one_process_four_devices(tmp_path_factory):
    """1 process x 4 devices: (record, out, runs)."""
    return _finished(tmp_path_factory.mktemp("one"), 1, 4)


def _finished(root: Path, processes: int, devices: int) -> tuple[dict, Path, Path]:
    status = _job(root, processes, devices=devices)
    assert status == 0, (root / "process-0.log").read_text()[-3000:]
    return json.loads((root / "out" / "result.json").read_text()), *_dirs(root)


def _dirs(root: Path) -> tuple[Path, Path]:
    return root / "out", root / "runs"


def test_two_processes_see_four_devices_and_agree_exactly(jobs):
    record, out, _ = jobs["two"]
    assert (record["processes"], record["devices"]) == (2, 4)
    p0, p1 = (json.loads((out / f"process-{i}.json").read_text()) for i in (0, 1))
    assert p0 == p1 == record  # identical values on both processes, bit for bit
    assert record["phi_again"] == record["phi"] and record["nit"] == 10


def assert_same_numbers(a: dict, b: dict, phi_rel: float) -> None:
    """Equal training histories and parameters, objective, gradient, path and Metric 2.1, to
    the tolerances of a different float summation order."""
    np.testing.assert_allclose(b["history"], a["history"], rtol=1e-5)
    for run_a, run_b in zip(a["params"], b["params"], strict=True):
        for layer, leaves in run_a.items():
            for name, values in leaves.items():
                if not (layer in PRE_BN_BIAS and name == "bias"):
                    np.testing.assert_allclose(run_b[layer][name], values, rtol=1e-4, atol=1e-5)
    assert b["objective"] == pytest.approx(a["objective"], rel=1e-6)
    for layer, values in a["grad"].items():
        np.testing.assert_allclose(b["grad"][layer], values, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(b["path"], a["path"], rtol=1e-6)
    assert b["phi"] == pytest.approx(a["phi"], rel=phi_rel)


def test_two_processes_on_four_devices_compute_what_one_device_does(jobs):
    single, two = jobs["single"][0], jobs["two"][0]
    assert single["devices"] == 1 and not single["all_reduce"] and two["all_reduce"]
    assert_same_numbers(single, two, phi_rel=1e-2)


@pytest.mark.exhaustive
def test_four_devices_split_the_work_and_compute_what_one_does(jobs, one_process_four_devices):
    single, one = jobs["single"][0], one_process_four_devices[0]
    assert (one["devices"], one["processes"]) == (4, 1) and one["all_reduce"]
    assert_same_numbers(single, one, phi_rel=1e-2)


@pytest.mark.exhaustive
def test_two_processes_compute_what_one_process_does_on_four_devices(
    jobs, one_process_four_devices
):
    assert_same_numbers(one_process_four_devices[0], jobs["two"][0], phi_rel=1e-3)


def test_a_job_writes_one_set_of_files(jobs):
    _, out, runs = jobs["two"]
    _, _, runs_single = jobs["single"]
    names = lambda root: sorted(str(p.relative_to(root)) for p in root.rglob("*"))  # noqa: E731
    assert names(runs) == names(runs_single)  # the same runs, measurements, locks; nothing else
    assert not [p for p in runs.rglob("*") if p.name.endswith(".tmp")]
    assert sorted(p.name for p in out.iterdir()) == [
        "process-0.json",
        "process-1.json",
        "result.json",
    ]


def test_a_job_killed_on_one_process_resumes_from_the_primarys_checkpoint(jobs):
    # the "two" job died on process 1 after the primary wrote its first checkpoint; started
    # again it resumed there and ended where 1 device does (the test above)
    status, checkpoints = jobs["killed"]
    assert status == 7 and len(checkpoints) == 1 and checkpoints[0].endswith(".msgpack")
    _, _, runs = jobs["two"]
    assert not list((runs / "checkpoints").iterdir())  # removed once the run was saved


def test_partial_environment_is_a_user_error(monkeypatch):
    monkeypatch.setenv(distributed.ENV_COORDINATOR, "127.0.0.1:1234")
    monkeypatch.delenv(distributed.ENV_NUM_PROCESSES, raising=False)
    monkeypatch.delenv(distributed.ENV_PROCESS_ID, raising=False)
    with pytest.raises(UserError, match="KESKAR_NUM_PROCESSES, KESKAR_PROCESS_ID"):
        distributed.initialize_from_env()


def test_alone_every_helper_is_the_identity():
    assert distributed.process_index() == 0 and distributed.is_primary()
    assert distributed.agree(True) is True and distributed.agree(3) == 3
    np.testing.assert_array_equal(distributed.agree(np.array([True, False])), [True, False])
    distributed.barrier("alone")  # returns at once


def test_launch_stops_every_process_when_one_fails(tmp_path):
    # process 1 fails at once; process 0 would wait forever: the job ends with process 1's status
    program = "import os, time, sys\nif os.environ['KESKAR_PROCESS_ID'] == '1': sys.exit(3)\n"
    program += "time.sleep(600)"
    with open(tmp_path / "p0.log", "w") as log:
        status = launch.launch(["-c", program], 2, timeout=120, log_dir=tmp_path, stdout=log)
    assert status == 3


def test_launch_reports_every_process_that_failed_not_only_the_first(tmp_path, capsys):
    program = "import os, sys\nprint('cause', os.environ['KESKAR_PROCESS_ID'])\n"
    program += "sys.exit(3 + int(os.environ['KESKAR_PROCESS_ID']))"
    with open(tmp_path / "p0.log", "w") as log:
        status = launch.launch(["-c", program], 3, timeout=120, log_dir=tmp_path, stdout=log)
    err = capsys.readouterr().err
    assert status == 3
    for pid in range(3):
        assert f"launch: process {pid} exited with status {3 + pid}" in err
    assert "[process 2] cause 2" in err  # a failed process's log tail is shown


def test_launch_timeout_stops_the_job(tmp_path):
    with open(tmp_path / "p0.log", "w") as log:
        status = launch.launch(["-c", "import time; time.sleep(600)"], 2, timeout=1.0,
                               log_dir=tmp_path, stdout=log)  # fmt: skip
    assert status == launch.TIMEOUT_STATUS


def test_launch_command_line_needs_a_program(capsys):
    with pytest.raises(SystemExit) as exit_info:
        launch.main(["--processes", "2"])
    assert exit_info.value.code == 2
    assert "give the program after --" in capsys.readouterr().err


def test_process_env_forces_the_device_count():
    base = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --foo", "X": "1"}
    env = launch.process_env(1, 2, 5555, 2, base)
    assert env["XLA_FLAGS"] == "--foo --xla_force_host_platform_device_count=2"
    assert (env["KESKAR_COORDINATOR"], env["KESKAR_NUM_PROCESSES"]) == ("127.0.0.1:5555", "2")
    assert (env["KESKAR_PROCESS_ID"], env["JAX_PLATFORMS"], env["X"]) == ("1", "cpu", "1")
