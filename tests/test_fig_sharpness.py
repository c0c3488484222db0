"""End-to-end: the main script on a tiny configuration, into a temporary --out."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "fig_sharpness.py"
TINY = [
    "--dataset",
    "mnist10k",
    "--seeds",
    "2",
    "--epochs",
    "1",
    "--hidden",
    "32,32",
    "--epsilons",
    "1e-3",
    "--subspace-dim",
    "5",
    "--subspace-scaling",
    "unit,gaussian",
    "--alphas",
    "4",
    "--no-progress",
]


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fig")
    return root / "out", root / "runs"


def run_script(*args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600
    )


def test_tiny_end_to_end_run_writes_json_and_figures(run_dirs):
    out, runs = run_dirs
    proc = run_script(*TINY, "--out", str(out), "--runs-dir", str(runs))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "fig_sharpness_mnist10k_paper.json").read_text())
    for stem in ("fig3_linear", "fig7_curvilinear", "sharpness"):
        for ext in ("png", "pdf"):
            assert (out / f"{stem}_mnist10k_paper.{ext}").stat().st_size > 1000
    assert results["dataset"]["name"] == "mnist10k"
    assert results["config"]["sb_batch"] == 34 and results["config"]["lb_batch"] == 800
    assert len(results["runs"]) == 4
    assert {r["space"] for r in results["sharpness"]} == {
        "full",
        "subspace-unit",
        "subspace-gaussian",
    }
    for record in results["sharpness"]:
        # only the iteration limit, or an exact KKT corner of a small box, ends the search
        assert record["nit"] == 10 or "PROJECTED GRADIENT" in record["message"]
    path = results["paths"]["linear"]
    assert len(path["alpha"]) == 4 and path["alpha"][0] == -1.0
    # the terminal tables are printed from the same JSON
    sb = results["summary"]["accuracy"]["test_accuracy"]["SB"]
    assert f"{sb[0]:.2f} +- {sb[1]:.2f}" in proc.stdout
    assert "Table 3" in proc.stdout and "Table 4" in proc.stdout
    assert "SB scaled from 256 to 34" in proc.stderr


def test_second_run_reuses_runs_and_measurements(run_dirs):
    out, runs = run_dirs
    before = sorted(p.stat().st_mtime_ns for p in runs.rglob("*.json"))
    proc = run_script(*TINY, "--out", str(out), "--runs-dir", str(runs))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.stat().st_mtime_ns for p in runs.rglob("*.json")) == before


def test_replot_draws_from_the_json_without_jax(run_dirs):
    out, _ = run_dirs
    (out / "sharpness_mnist10k_paper.png").unlink()
    code = (
        f"import sys, runpy; sys.argv = ['x', '--replot', '--dataset', 'mnist10k', '--out', "
        f"{str(out)!r}]\n"
        f"try:\n    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'jax' not in sys.modules, 'replot imported jax'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (out / "sharpness_mnist10k_paper.png").is_file()


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--epochs", "0"], "--epochs=0 is impossible"),
        (["--epsilons", "-1e-3"], "--epsilons"),
        (["--lb-batch", "9000"], "--lb-batch=9000 exceeds the 8000 training images"),
    ],
)
def test_bad_settings_fail_with_one_clear_line(tmp_path, bad, message):
    proc = run_script(*TINY, "--out", str(tmp_path / "o"), "--runs-dir", str(tmp_path / "r"), *bad)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not (tmp_path / "o").exists()
