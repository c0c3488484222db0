"""Every figure script end to end (one tiny make_all over every spec; the main script's outputs in
detail, its reuse of saved work and its errors), their replot without JAX,
their errors, and the pure rules inside them (batch-size ranges, where accuracy starts to
fall). The scripts are found from their specs (keskar_repro.report.experiment.specs)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

import fig_batch_sweep  # noqa: E402
import fig_curvature  # noqa: E402
import fig_lr_batch  # noqa: E402
import fig_sharpness_notions  # noqa: E402
import table_remedies  # noqa: E402

from keskar_repro.report import experiment  # noqa: E402
from keskar_repro.training.train import TrainConfig  # noqa: E402

SPECS = experiment.specs()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("make_all")
    out, runs = root / "out", root / "runs"
    args = ["--quick", "--dataset", "mnist10k", "--hidden", "16"]
    args += ["--epochs", "2", "--seeds", "1", "--out", str(out), "--runs-dir", str(runs)]
    proc = subprocess.run(
        [sys.executable, str(EXPERIMENTS / "make_all.py"), *args, "--no-progress"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, runs, proc


def results(out: Path, stem: str) -> dict:
    return json.loads((out / f"{stem}_mnist10k_quick.json").read_text())


def test_make_all_runs_every_spec_and_writes_its_json(made):
    out, _, proc = made
    assert [s.name for s in SPECS][:1] == ["fig_sharpness"]  # the runs the others reuse
    for spec in SPECS:
        r = results(out, spec.stem)
        assert r["dataset"]["name"] == "mnist10k" and r["wall_seconds"] > 0
        assert r["command"].startswith(f"python experiments/{spec.name}.py")
        assert r["environment"]["versions"] and r["summary"]
        # the same provenance in every results JSON: data, hardware, versions, BN policy,
        # batch note (None where the figure has no SB/LB pair), wall time
        assert set(experiment.PROVENANCE_KEYS) <= set(r), spec.name
        assert r["environment"]["host_cpu"] and r["environment"]["device"], spec.name
        assert r["config"]["bn_policy"] in ("batch", "full", "running"), spec.name
        assert "batch_note" in r["config"], spec.name
        assert f"=== {spec.name} " in proc.stdout
    assert "=== done" in proc.stdout


def test_main_script_writes_its_tables_json_and_figures(made):
    out, _, proc = made
    r = results(out, "fig_sharpness")
    for stem in ("fig3_linear", "fig7_curvilinear", "sharpness"):
        for ext in ("png", "pdf"):
            assert (out / f"{stem}_mnist10k_quick.{ext}").stat().st_size > 1000
    assert r["config"]["sb_batch"] == 34 and r["config"]["lb_batch"] == 800
    assert [(run["regime"], run["seed"]) for run in r["runs"]] == [("SB", 0), ("LB", 0)]
    assert {rec["space"] for rec in r["sharpness"]} == {"full", "subspace-gaussian"}
    for record in r["sharpness"]:
        # only the iteration limit, or an exact KKT corner of a small box, ends the search
        assert record["nit"] == 10 or "PROJECTED GRADIENT" in record["message"]
    path = r["paths"]["linear"]
    assert len(path["alpha"]) == 13 and path["alpha"][0] == -1.0 and path["alpha"][-1] == 2.0
    # the terminal tables are printed from the same JSON
    sb = r["summary"]["accuracy"]["test_accuracy"]["SB"]
    assert f"{sb[0]:.2f} +- {sb[1]:.2f}" in proc.stdout
    assert "Table 3" in proc.stdout and "Table 4" in proc.stdout
    assert "SB scaled from 256 to 34" in proc.stderr


def test_a_second_run_reuses_every_run_and_measurement(made):
    out, runs, _ = made
    before = sorted(p.stat().st_mtime_ns for p in runs.rglob("*.json"))
    args = ["--preset", "quick", "--dataset", "mnist10k", "--hidden", "16", "--epochs", "2"]
    args += ["--seeds", "1", "--out", str(out), "--runs-dir", str(runs), "--no-progress"]
    proc = subprocess.run(
        [sys.executable, str(EXPERIMENTS / "fig_sharpness.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.stat().st_mtime_ns for p in runs.rglob("*.json")) == before


def test_figure_2_curves_cover_every_epoch(made):
    r = results(made[0], "fig2_accuracy")
    for regime in ("SB", "LB"):
        curve = r["curves"][regime]
        assert curve["epoch"] == [1, 2] and len(curve["test_accuracy_mean"]) == 2
    assert r["curves"]["SB"]["batch_size"] == 34 and r["curves"]["LB"]["batch_size"] == 800


def test_figure_6_measures_every_snapshot(made):
    r = results(made[0], "fig6_sharpness_training")
    assert r["snapshot_epochs"] == [0, 1, 2]
    points = {(row["regime"], row["epoch"]) for row in r["rows"]}
    assert points == {(g, e) for g in ("SB", "LB") for e in (1, 2)}
    assert all(row["value"] >= 0 and row["lambda_max"] > 0 for row in r["rows"])
    # the last snapshot is the trained run: the notions study's lambda_max there, one cache
    notions = results(made[0], "fig_sharpness_notions")["rows"]
    for row in (x for x in r["rows"] if x["epoch"] == 2):
        same = [n["value"] for n in notions if (n["regime"], n["point"], n["notion"]) ==
                (row["regime"], "trained", "hessian_max")]  # fmt: skip
        assert same == [row["lambda_max"]]
    assert {"SB/lambda_max", "LB/lambda_max"} <= set(r["summary"])


def test_figure_5_warm_starts_from_every_snapshot(made):
    out, runs, _ = made
    r = results(out, "fig5_warm_start")
    assert [row["k"] for row in r["rows"]] == [0, 1, 2]
    for row in r["rows"]:
        assert row["batch_size"] == 800 and row["epoch"] == r["config"]["lb_epochs"]
        source, k = row["warm_start"].split("@")
        assert (runs / source / "snapshots" / f"epoch-{int(k):04d}.msgpack").is_file()
    assert len(r["summary"]["test_accuracy"]) == 3


def test_table_7_trains_conservative_lb_beside_the_shared_sb_and_lb_runs(made):
    out, runs, _ = made
    r = results(out, "table7_conservative")
    assert [row["regime"] for row in r["rows"]] == ["SB", "LB", "LB-conservative"]
    main = {row["regime"]: row["run_dir"] for row in results(out, "fig_sharpness")["runs"]}
    for row in r["rows"][:2]:
        assert row["run_dir"] == main[row["regime"]]  # fig_sharpness's runs, not new ones
    conservative = r["rows"][2]
    saved = json.loads((Path(conservative["run_dir"]) / "config.json").read_text())
    config = TrainConfig.from_dict(saved)
    assert (config.prox_steps, config.prox_lambda, config.batch_size) == (3, 1e-3, 800)
    assert conservative["run_dir"] != main["LB"]
    assert set(r["summary"]["LB-conservative"]["sharpness"]) == {"0.001"}


def test_table_7_reads_the_sb_and_lb_rows_of_a_main_results_json(made):
    import table_conservative

    from keskar_repro.errors import UserError

    out, runs, _ = made
    main_json = str(out / "fig_sharpness_mnist10k_quick.json")
    argv = ["--preset", "quick", "--dataset", "mnist10k", "--hidden", "16", "--epochs", "2"]
    argv += ["--seeds", "1"]
    settings = experiment.parse(table_conservative.SPEC, argv)
    configs = experiment.sb_lb_configs(settings, experiment.load_dataset(settings), {})
    rows = table_conservative.baseline_rows(main_json, configs, 1, [1e-3])
    measured = results(out, "table7_conservative")["rows"][:2]  # the same runs, measured here
    keys = ("regime", "seed", "run_dir", "test_accuracy", "train_loss", "epoch", "sharpness")
    assert [{k: r[k] for k in keys} for r in rows] == [{k: r[k] for k in keys} for r in measured]
    assert all(r["baseline"] == main_json for r in rows)
    with pytest.raises(UserError, match="SB seed 1 is missing or not this script's run"):
        table_conservative.baseline_rows(main_json, configs, 2, [1e-3])
    with pytest.raises(UserError, match="no full-space sharpness at eps \\['0.002'\\]"):
        table_conservative.baseline_rows(main_json, configs, 1, [1e-3, 2e-3])


def test_figure_2_draws_the_histories_of_a_main_results_json(made, tmp_path):
    import dataclasses

    import fig_accuracy_curves

    from keskar_repro.errors import UserError

    out, _, _ = made
    main_json = str(out / "fig_sharpness_mnist10k_quick.json")
    argv = ["--preset", "quick", "--dataset", "mnist10k", "--hidden", "16", "--epochs", "2"]
    argv += ["--seeds", "1", "--no-progress", "--runs-dir", str(tmp_path / "none")]
    code = experiment.main(
        fig_accuracy_curves.SPEC, [*argv, "--baseline", main_json, "--out", str(tmp_path)]
    )
    assert code == 0 and not (tmp_path / "none").exists()  # nothing trained
    drawn = json.loads((tmp_path / "fig2_accuracy_mnist10k_quick.json").read_text())
    from_runs = results(out, "fig2_accuracy")
    assert drawn["curves"] == from_runs["curves"] and drawn["summary"] == from_runs["summary"]
    assert all(r["baseline"] == main_json for r in drawn["runs"])
    settings = experiment.parse(fig_accuracy_curves.SPEC, argv)
    configs = experiment.sb_lb_configs(settings, experiment.load_dataset(settings), {})
    other = {**configs, "LB": dataclasses.replace(configs["LB"], learning_rate=0.5)}
    with pytest.raises(UserError, match="LB seed 0 is missing or not this script's run"):
        fig_accuracy_curves.baseline_histories(main_json, other, 1)
    with pytest.raises(UserError, match="does not exist; run experiments/fig_sharpness.py"):
        fig_accuracy_curves.baseline_histories(str(tmp_path / "no.json"), configs, 1)


def test_sharpness_notions_measure_every_point_and_the_rescalings_keep_the_function(made):
    r = results(made[0], "fig_sharpness_notions")
    assert list(r["notions"]) == ["metric_2_1", "adaptive", "average", "average_adaptive",
                                  "hessian_max"]  # fmt: skip
    points = {(row["regime"], row["point"]) for row in r["rows"]}
    assert points == {(g, p) for g in ("SB", "LB") for p in ("trained", "matched", "pre_bn x2",
                                                              "last_bn x2")}  # fmt: skip
    for row in r["rows"]:
        trained = next(
            t for t in r["rows"] if (t["regime"], t["point"]) == (row["regime"], "trained")
        )
        if row["point"] == "last_bn x2":  # exact for a power of 2 (keskar_repro.training.reparam)
            assert row["loss"] == trained["loss"]
        assert row["loss"] == pytest.approx(trained["loss"], rel=1e-2)  # BN's epsilon only
    response = r["summary"]["response"]
    adaptive = [x for x in response if (x["notion"], x["point"]) == ("adaptive", "last_bn x2")]
    assert len(adaptive) == 2 and all(x["ratio"] == pytest.approx(1, rel=1e-3) for x in adaptive)
    assert {t["n"] for t in r["summary"]["tau"]} == {2}  # 1 seed x SB and LB
    versus = r["summary"]["versus"]  # each other notion against Metric 2.1, trained and matched
    assert {(t["notion"], t["point"], t["gap"], t["n"]) for t in versus} == {
        (n, p, "metric_2_1", 2) for n in list(r["notions"])[1:] for p in ("trained", "matched")
    }
    hessian = {(x["regime"], x["point"]): x["value"] for x in r["rows"]
               if x["notion"] == "hessian_max"}  # fmt: skip
    assert len(hessian) == 8 and min(hessian.values()) > 0
    # scaling every hidden Dense layer by 2 leaves f but scales those kernels' Hessian block
    # by 1/4: lambda_max is not invariant to the rescaling
    assert hessian["SB", "pre_bn x2"] < hessian["SB", "trained"]
    for run in r["runs"]:  # the history's last kernel norm is the trained kernel's
        curve = r["summary"]["rms_curves"][run["regime"]]
        assert len(curve["epoch"]) == r["config"]["epochs"]
        for layer, final in run["rms"].items():
            if layer in run["rms_history"]:
                assert curve[f"{layer}_mean"][-1] == pytest.approx(final, rel=1e-5)
        assert len(run["rms_history"]) == len(run["rms"]) // 4  # hidden kernels only


def test_sharpness_notions_text_prints_an_eps_free_notion_once(made):
    r = results(made[0], "fig_sharpness_notions")
    rows = r["rows"] + [{**row, "epsilon": 5e-4} for row in r["rows"]]  # as at two epsilons
    r = {**r, "rows": rows, "summary": fig_sharpness_notions.summarize({**r, "rows": rows})}
    lines = fig_sharpness_notions.text(r).splitlines()
    assert len([x for x in lines if x.startswith("metric_2_1, ")]) == 2  # one per eps
    assert [x for x in lines if x.startswith("hessian_max")][0].startswith("hessian_max, - |")
    assert len([x for x in lines if x.startswith("hessian_max")]) == 1
    gap = [x for x in lines if x.startswith("  hessian_max, -, pairs trained, gap loss")]
    assert len(gap) == 1  # and against Metric 2.1, once per Metric 2.1's eps:
    assert len([x for x in lines if "hessian_max" in x and "metric_2_1" in x]) == 4


def test_sharpness_notions_population_all_is_every_other_saved_run(made):
    from keskar_repro.store.runs import load_run, run_dir, saved_runs

    out, runs_dir, _ = made
    r = results(out, "fig_sharpness_notions")
    pairs = {row["run"] for row in r["runs"]}
    others = fig_sharpness_notions.other_runs(runs_dir, "mnist10k", (16,), pairs)
    names = {run_dir(run.config, runs_dir).name for run in others}
    assert len(names) == len(others) and names and not names & pairs
    every = {p.name for p in saved_runs(runs_dir, "mnist10k") if not load_run(p)[0].diverged}
    assert names | pairs == every
    labels = [fig_sharpness_notions.label(run.config) for run in others]
    assert any("warm from" in x for x in labels) and any("B=2000" in x for x in labels)
    assert fig_sharpness_notions.other_runs(runs_dir, "mnist10k", (32,), pairs) == []

    other = {**r["runs"][0], "run": "x", "regime": "other", "gap_loss": 9.0, "gap_accuracy": 9.0}
    rows = [{**row, "run": "x", "regime": "other", "value": 1e9} for row in r["rows"]
            if (row["run"], row["point"]) == (r["runs"][0]["run"], "trained")]  # fmt: skip
    summary = fig_sharpness_notions.summarize(
        {**r, "runs": [*r["runs"], other], "rows": [*r["rows"], *rows]}
    )
    tau = [t for t in summary["tau"] if t["population"] == "all"]
    assert len(tau) == len(r["notions"]) * 2 and {t["n"] for t in tau} == {3}
    gap = json.loads(json.dumps(summary["gap"]))  # tuples as the JSON's lists
    assert gap == r["summary"]["gap"]  # the SB/LB table ignores other runs


def test_figure_4_and_the_grid_cover_their_ranges(made):
    out = made[0]
    sweep = results(out, "fig4_batch_sweep")["summary"]
    assert sweep["batch_sizes"] == [32, 256, 2000]
    grid = results(out, "fig_lr_batch")["summary"]
    assert grid["learning_rates"] == [1e-4, 1e-3, 1e-2] and grid["batch_sizes"] == [64, 800]
    assert len(grid["test_accuracy"]) == 3 and len(grid["test_accuracy"][0]) == 2


def test_table_4_study_measures_each_construction_in_one_subspace_per_seed(made):
    r = results(made[0], "table4_subspaces")
    assert {(row["regime"], row["construction"]) for row in r["rows"]} == {
        (g, c) for g in ("SB", "LB") for c in ("gaussian", "uniform")
    }
    for row in r["rows"]:
        assert row["subspace_dim"] == 100 and row["subspace_scaling"] == row["construction"]
        assert row["nit"] == 10 or "PROJECTED GRADIENT" in row["message"]
        assert row["value"] >= 0 and 0 <= row["frac_at_bound"] <= 1
        scans = [k for k in ("scan", "scan_ones") if k in row]
        assert scans == (["scan", "scan_ones"] if row["construction"] == "uniform" else ["scan"])
        scan = row["scan"]
        assert scan["train_loss"][scan["t"].index(0.0)] == pytest.approx(row["f0"], rel=1e-5)
        assert scan["train_loss"][scan["t"].index(1.0)] == pytest.approx(row["f_max"], rel=1e-4)
    variants = r["summary"]["variants"]
    assert set(variants) == {"gaussian/normalized/default", "uniform/normalized/default"}
    assert set(r["summary"]["paper"]) == {"SB/0.001", "LB/0.001", "SB/0.0005", "LB/0.0005"}


def test_table_4_study_in_parts_of_seeds_and_variants_merges_into_one(made, tmp_path):
    import table4_subspaces

    out, runs, _ = made
    common = ["--dataset", "mnist10k", "--preset", "quick", "--hidden", "16", "--epochs", "2",
              "--runs-dir", str(runs), "--no-progress"]  # fmt: skip
    spec, whole = table4_subspaces.SPEC, out / "table4_subspaces_mnist10k_quick.json"
    # a part of one solver reading only: no default-reading rows
    argv = [*common, "--constructions", "uniform", "--readings", "maxfun", "--out", str(tmp_path)]
    assert experiment.main(spec, argv) == 0
    part = tmp_path / whole.name
    assert {row["reading"] for row in json.loads(part.read_text())["rows"]} == {"maxfun"}
    merged = tmp_path / "merged"
    assert (
        experiment.main(spec, [*common, "--out", str(merged), "--merge", str(whole), str(part)])
        == 0
    )
    m = json.loads((merged / whole.name).read_text())
    assert m["config"]["readings"] == ["default", "maxfun"] and m["config"]["seeds"] == 1
    assert m["config"]["measured"] == sorted(
        f"0/{c}/normalized/{r}" for c, r in
        (("gaussian", "default"), ("uniform", "default"), ("uniform", "maxfun"))
    )  # fmt: skip
    assert {v["seeds"] for v in m["summary"]["variants"].values()} == {1}
    assert len(m["rows"]) == len(results(out, "table4_subspaces")["rows"]) + 2  # SB and LB
    with pytest.raises(experiment.UserError, match="is in both"):  # a unit twice: refused
        experiment.main(spec, [*common, "--out", str(merged), "--merge", str(whole), str(whole)])


def test_curvature_measures_each_run_whole_and_per_module(made):
    r = results(made[0], "fig_curvature")
    assert {(row["regime"], row["policy"]) for row in r["rows"]} == {
        ("SB", "batch"),
        ("LB", "batch"),
    }
    for row in r["rows"]:
        whole = row["whole"]
        assert len(whole["eigenvalues"]) == 3 and whole["lambda_max"] == whole["eigenvalues"][0]
        assert whole["eigenvalues"] == sorted(whole["eigenvalues"], reverse=True)
        assert whole["converged"] and whole["lanczos_steps"] <= 50
        # the trace by XTrace and the trace the density implies agree within their errors
        implied, implied_error = whole["density"]["trace"]
        error = 4 * (whole["trace_stderr"] + implied_error)
        assert abs(implied - whole["trace"]) <= error
        # Dense_0, BatchNorm_0, Dense_1: every parameter in exactly one module
        assert list(row["layers"]) == ["Dense_0", "BatchNorm_0", "Dense_1"]
        assert sum(b["n_params"] for b in row["layers"].values()) == whole["n_params"]
        # a diagonal block's largest eigenvalue is at most the whole Hessian's
        for b in row["layers"].values():
            assert b["lambda_max"] <= whole["lambda_max"] + max(b["errors"][0], whole["errors"][0])
    summary = r["summary"]["policies"]["batch"]
    assert summary["lambda_max"]["seeds"] == 1 and len(summary["layers"]) == 3
    # Metric 2.1 beside its predictions: the same measurement as the main script's table
    # (one cache), and the first-order value sum |g_i| h_i computed here equal to the solver's
    full = {(rec["regime"], rec["seed"]): rec["value"] for rec in
            results(made[0], "fig_sharpness")["sharpness"]
            if rec["space"] == "full" and rec["epsilon"] == 0.001}  # fmt: skip
    for row in r["rows"]:
        q = row["quadratic"]["0.001"]
        assert q["measured"] == full[(row["regime"], row["seed"])]
        assert q["first_order"] == pytest.approx(q["measured_first_order"], rel=1e-4)
        assert q["along_v"] > 0 and q["step_along_v"] > 0
        assert row["quadratic"]["lambda_max"] == pytest.approx(row["whole"]["lambda_max"], rel=1e-2)
    # Kendall's tau with Metric 2.1 over the SB and LB runs, per quantity and epsilon
    assert {(t["quantity"], t["epsilon"], t["n"]) for t in summary["tau"]} == {
        (q, "0.001", 2) for q in ("lambda_max", "trace")
    }


def test_curvature_parts_are_cached_apart_so_a_lighter_pass_reuses_them(made, tmp_path):
    out, runs, _ = made
    argv = ["--dataset", "mnist10k", "--preset", "quick", "--hidden", "16", "--epochs", "2",
            "--runs-dir", str(runs), "--out", str(tmp_path), "--no-progress", "--no-layers",
            "--slq-probes", "0"]  # fmt: skip
    assert experiment.main(fig_curvature.SPEC, argv) == 0
    light, full = results(tmp_path, "fig_curvature"), results(out, "fig_curvature")
    for a, b in zip(full["rows"], light["rows"], strict=True):
        assert "layers" not in b and "density" not in b["whole"]
        assert b["whole"] == {k: v for k, v in a["whole"].items() if k != "density"}
    assert light["wall_seconds"] < full["wall_seconds"]  # read back, not measured again


def test_surface_grids_are_centred_on_the_minimizer_and_leave_no_partial_file(made):
    out, runs, _ = made
    r = results(out, "fig_surface")
    assert r["alphas"] == r["betas"] and len(r["alphas"]) == 11 and r["alphas"][5] == 0.0
    f0 = {row["regime"]: row["f0"] for row in results(out, "table4_subspaces")["rows"]}
    for row in r["rows"]:
        for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            grid = row[name]
            assert len(grid) == 11 and all(len(line) == 11 for line in grid)
        # (0, 0) is the minimizer: its training objective under batch statistics
        assert row["train_loss"][5][5] == pytest.approx(f0[row["regime"]], rel=1e-5)
        assert max(map(max, row["train_loss"])) > row["train_loss"][5][5]
    assert not list(runs.glob("*/measurements/*.partial.npz"))  # complete: JSON only
    assert set(r["summary"]["regimes"]) == {"SB", "LB"}


def test_sharpness_report_is_one_of_them(made):
    r = results(made[0], "sharpness_report")
    assert len(r["rows"]) == 2 * (3 * 3 + 2)  # SB, LB x (3 policies x 3 spaces + 2 variants)
    f0 = {(row["regime"], row["bn_policy"]) for row in r["rows"]}
    assert len(f0) == 6
    for regime in ("SB", "LB"):  # one objective per policy: every space sees the same f(x)
        for policy in ("batch", "full", "running"):
            values = {row["f0"] for row in r["rows"] if (row["regime"], row["bn_policy"]) ==
                      (regime, policy)}  # fmt: skip
            assert len(values) == 1
    assert (made[0] / "sharpness_report_mnist10k_quick.md").read_text().count("\n| ") == 23


def test_replot_of_every_figure_needs_no_jax(made):
    out = made[0]
    scripts = [spec.name for spec in SPECS]
    code = "import runpy, sys\n"
    for script in scripts:
        code += (
            f"sys.argv = ['x', '--replot', '--dataset', 'mnist10k', '--preset', 'quick', "
            f"'--out', {str(out)!r}]\n"
            f"try:\n    runpy.run_path({str(EXPERIMENTS / (script + '.py'))!r}, "
            "run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
        )
    code += "assert 'jax' not in sys.modules, 'replot imported jax'\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = [
        line.split(" ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("wrote ")
    ]
    assert len(written) >= 2 * len(scripts)  # every script draws at least one PNG and PDF
    for f in written:
        assert Path(f).stat().st_size > 1000, f


def test_bad_settings_fail_with_one_clear_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(EXPERIMENTS / "fig_batch_sweep.py"),
            "--dataset",
            "mnist10k",
            "--batch-sizes",
            "32,9000",
            "--out",
            str(tmp_path / "o"),
            "--runs-dir",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --batch-sizes [9000] exceed the 8000 training images"
    )
    assert not (tmp_path / "o").exists()


def test_batch_size_ranges():
    assert fig_batch_sweep.sweep_batch_sizes(8000) == [32, 64, 128, 256, 512, 800, 1600, 4000, 8000]
    assert fig_batch_sweep.sweep_batch_sizes(60000)[-4:] == [6000, 12000, 30000, 60000]
    assert fig_lr_batch.grid_batch_sizes(60000, "paper") == [32, 128, 512, 2048, 6000]


def sweep(accuracies: dict[int, list[float]]) -> dict:
    """fig_batch_sweep.summarize of results with these test accuracies per batch size."""
    rows = [
        {"batch_size": b, "test_accuracy": a, "train_accuracy": 1.0, "sharpness": {"0.001": 1.0}}
        for b, values in accuracies.items()
        for a in values
    ]
    return fig_batch_sweep.summarize({"config": {"batch_sizes": list(accuracies)}, "rows": rows})


def test_accuracy_falls_where_the_drop_exceeds_two_standard_errors():
    # best 0.98 (std 0); at 256 the drop (0.05 points) is under the 0.1-point floor; at 1024
    # (std 0.002 / sqrt(2), ddof 1) the standard error is sqrt(0 + 0.002^2 / 2 / 2) = 0.001, so
    # the margin is 2 * 0.001 * 100 = 0.2 points, and the drop of 0.4 points exceeds it
    summary = sweep({32: [0.98, 0.98], 256: [0.9795, 0.9795], 1024: [0.975, 0.977]})
    assert summary["best_batch_size"] == 32 and summary["falls_at"] == 1024
    assert summary["falls_detail"][1]["margin"] == pytest.approx(0.2)
    assert summary["falls_detail"][0]["margin"] == pytest.approx(0.1)
    flat = sweep({32: [0.98], 256: [0.98]})
    assert flat["falls_at"] is None


def test_compare_results_finds_the_one_number_that_moved():
    import compare_results

    before = {"runs": [{"test_loss": [0.5, 0.25], "seconds": 3.0}], "note": "x", "command": "a"}
    after = {"runs": [{"test_loss": [0.5, 0.3], "seconds": 9.0}], "note": "x", "new": 1}
    r = compare_results.compare(before, after)
    assert r["shared"] == 3 and r["only_after"] == ["new"] and r["only_before"] == []
    ((leaf, (a, b, (absolute, relative))),) = r["diffs"].items()
    assert (leaf, a, b) == ("runs[0].test_loss[1]", 0.25, 0.3)
    assert absolute == pytest.approx(0.05) and relative == pytest.approx(0.05 / 0.3)


@pytest.mark.parametrize("bad", [["--prox-steps", "0"], ["--prox-lambda", "-0.5"]])
def test_table_7_rejects_impossible_proximal_settings(bad, capsys):
    import table_conservative

    with pytest.raises(SystemExit) as exit_info:
        experiment.parse(table_conservative.SPEC, bad)
    assert exit_info.value.code == 2
    assert f"{bad[0]}={bad[1]} is impossible" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--epochs", "0"], "--epochs=0 is impossible"),
        (["--epsilons", "-1e-3"], "--epsilons"),
        (["--lb-batch", "9000"], "--lb-batch=9000 exceeds the 8000 training images"),
    ],
)
def test_main_script_rejects_bad_settings_with_one_line_and_writes_nothing(tmp_path, bad, message):
    args = ["--dataset", "mnist10k", "--out", str(tmp_path / "o"), "--runs-dir", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, str(EXPERIMENTS / "fig_sharpness.py"), *args, *bad],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (tmp_path / "o").exists()


def test_results_table_prints_the_readme_rows_from_the_json(made, capsys):
    import results_table

    assert results_table.pm((96.8234, 0.1234)) == "96.82 +- 0.12"
    assert results_table.pm((0.0432, 0.0251)) == "0.043 +- 0.025"
    assert results_table.pm((3.5e-5, 0.2e-5)) == "3.5e-05 +- 0.2e-05"
    assert results_table.main([str(made[0] / "fig_sharpness_mnist10k_quick.json")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| quantity | paper SB | paper LB | mnist10k SB (34) |")
    assert any(line.startswith("| sharpness, full, eps 0.001 | 1.23 +- 0.83 |") for line in table)
    main = json.loads((made[0] / "fig_sharpness_mnist10k_quick.json").read_text())
    old = {**main, "config": {k: v for k, v in main["config"].items() if k != "init"}}
    header = results_table.markdown([main, old]).splitlines()[0]
    assert "| mnist10k glorot_uniform SB (34) |" in header
    assert "| mnist10k lecun_normal LB (800) |" in header  # before --init: Flax's default


@pytest.mark.exhaustive  # 1-2 min each: the merge logic's unit tests are in test_experiment.py
def test_sharpness_notions_in_parts_are_the_notions_of_all_seeds_at_once(made, tmp_path):
    out, runs_dir, _ = made
    common = ["--dataset", "mnist10k", "--preset", "quick", "--hidden", "16", "--epochs", "2",
              "--runs-dir", str(runs_dir), "--no-progress"]  # fmt: skip
    spec = fig_sharpness_notions.SPEC
    part = tmp_path / "part"
    argv = [*common, "--first-seed", "1", "--seeds", "1", "--out", str(part)]
    assert experiment.main(spec, argv) == 0
    assert experiment.main(spec, [*common, "--seeds", "2", "--out", str(tmp_path / "whole")]) == 0
    seed_0 = out / "fig_sharpness_notions_mnist10k_quick.json"
    parts = [str(part / seed_0.name), str(seed_0)]
    merged = tmp_path / "merged"
    assert experiment.main(spec, [*common, "--out", str(merged), "--merge", *parts]) == 0
    m, whole = (json.loads((d / seed_0.name).read_text()) for d in (merged, tmp_path / "whole"))
    for key in ("runs", "rows", "summary"):
        assert m[key] == whole[key], key
    assert m["config"]["seed_list"] == [0, 1] and m["config"]["seeds"] == 2
    assert fig_sharpness_notions.seeds_text(m["config"]) == "2 seeds"
    assert fig_sharpness_notions.seeds_text({"first_seed": 2, "seeds": 1}) == "1 seed (2)"
    assert fig_sharpness_notions.seeds_text({"seeds": 3}) == "3 seeds"  # before --first-seed
    other = _with_epochs(part / seed_0.name, 3)
    with pytest.raises(experiment.UserError, match="differs from .* in epochs; parts must"):
        experiment.main(spec, [*common, "--out", str(tmp_path / "no"), "--merge", str(seed_0),
                               str(other)])  # fmt: skip
    assert not (tmp_path / "no").exists()


@pytest.mark.exhaustive  # 1-2 min each: the merge logic's unit tests are in test_experiment.py
def test_a_part_of_the_other_runs_merged_with_the_pairs_is_population_all(made, tmp_path):
    out, runs_dir, _ = made
    common = ["--dataset", "mnist10k", "--preset", "quick", "--hidden", "16", "--epochs", "2",
              "--runs-dir", str(runs_dir), "--no-progress"]  # fmt: skip
    spec = fig_sharpness_notions.SPEC
    stem = "fig_sharpness_notions_mnist10k_quick.json"
    others = tmp_path / "others"
    assert experiment.main(spec, [*common, "--population", "others", "--out", str(others)]) == 0
    part = json.loads((others / stem).read_text())
    assert part["config"]["other_runs"] and not {r["regime"] for r in part["runs"]} - {"other"}
    assert part["summary"]["gap"] == [] and not list(others.glob("*.png"))  # drawn once merged
    assert {t["population"] for t in part["summary"]["tau"]} == {"all"}
    whole = tmp_path / "whole"
    argv = [*common, "--population", "all", "--seeds", "1", "--out", str(whole)]
    assert experiment.main(spec, argv) == 0
    merged = tmp_path / "merged"
    argv = [*common, "--out", str(merged), "--merge", str(others / stem), str(out / stem)]
    assert experiment.main(spec, argv) == 0
    m, w = (json.loads((d / stem).read_text()) for d in (merged, whole))
    for key in ("runs", "rows", "summary"):
        assert m[key] == w[key], key
    assert m["config"]["population"] == "all" and m["config"]["seed_list"] == [0]
    assert m["config"]["other_runs"] == sorted(w["config"]["other_runs"])
    pair_names = {r["run"] for r in m["runs"] if r["regime"] != "other"}
    assert pair_names.isdisjoint(m["config"]["other_runs"])  # no SB/LB run counted twice
    with pytest.raises(experiment.UserError, match="other runs .* is in both"):
        experiment.main(spec, [*common, "--out", str(tmp_path / "no"), "--merge",
                               str(others / stem), str(whole / stem)])  # fmt: skip
    older = json.loads((whole / stem).read_text())
    del older["config"]["other_runs"]  # a JSON from before the config listed them
    (tmp_path / "older.json").write_text(json.dumps(older))
    assert fig_sharpness_notions.part_units(older) == [0, *sorted(w["config"]["other_runs"])]
    with pytest.raises(experiment.UserError, match="other runs .* is in both"):
        experiment.main(spec, [*common, "--out", str(tmp_path / "no"), "--merge",
                               str(others / stem), str(tmp_path / "older.json")])  # fmt: skip
    empty = tmp_path / "empty-runs"
    empty.mkdir()
    argv = [*common, "--population", "others", "--runs-dir", str(empty), "--out", str(empty)]
    with pytest.raises(experiment.UserError, match="no saved mnist10k runs other than SB/LB"):
        experiment.main(spec, argv)


@pytest.mark.exhaustive  # 1-2 min each: the merge logic's unit tests are in test_experiment.py
def test_parts_at_other_epsilons_merge_with_each_tau_over_the_runs_measured_at_its_eps(
    made, tmp_path
):
    out, runs_dir, _ = made
    common = ["--dataset", "mnist10k", "--preset", "quick", "--hidden", "16", "--epochs", "2",
              "--runs-dir", str(runs_dir), "--no-progress"]  # fmt: skip
    spec = fig_sharpness_notions.SPEC
    stem = "fig_sharpness_notions_mnist10k_quick.json"
    pairs, others, merged = tmp_path / "pairs", tmp_path / "others", tmp_path / "merged"
    argv = [*common, "--seeds", "1", "--epsilons", "1e-3,5e-4", "--out", str(pairs)]
    assert experiment.main(spec, argv) == 0  # both eps for the pair
    argv = [*common, "--population", "others", "--epsilons", "1e-3", "--out", str(others)]
    assert experiment.main(spec, argv) == 0  # one eps for the other runs
    argv = [*common, "--out", str(merged), "--merge", str(others / stem), str(pairs / stem)]
    assert experiment.main(spec, argv) == 0
    m = json.loads((merged / stem).read_text())
    assert m["config"]["epsilons"] == [1e-3, 5e-4]  # the union, the pairs' part first
    n_runs = len(m["runs"])
    assert n_runs > 2 and m["config"]["population"] == "all"
    tau = {(t["epsilon"], t["population"], t["point"]): t["n"] for t in m["summary"]["tau"]}
    assert tau[(1e-3, "all", "trained")] == n_runs and tau[(1e-3, "pairs", "trained")] == 2
    assert tau[(5e-4, "pairs", "matched")] == 2 and (5e-4, "all", "trained") not in tau
    assert {e["epsilon"] for e in m["summary"]["gap"]} == {1e-3, 5e-4}
    rows = [r for r in m["rows"] if r["epsilon"] == 1e-3 or r["regime"] != "SB"]
    partial = fig_sharpness_notions.summarize({**m, "rows": rows})  # SB not measured at 5e-4
    assert {e["epsilon"] for e in partial["gap"]} == {1e-3}
    assert not [t for t in partial["tau"] if t["epsilon"] == 5e-4]  # one run: no tau


def _with_epochs(path: Path, epochs: int) -> Path:
    """A copy of a results JSON whose config says another number of epochs."""
    r = json.loads(path.read_text())
    r["config"]["epochs"] = epochs
    copy = path.with_name("epochs.json")
    copy.write_text(json.dumps(r))
    return copy


@pytest.mark.parametrize("module, first", [(fig_batch_sweep, "32"), (fig_lr_batch, "64")])
def test_batch_size_parts_merge_to_the_figure_of_all_batch_sizes(made, tmp_path, module, first):
    out, runs_dir, _ = made
    stem = f"{module.STEM}_mnist10k_quick.json"
    whole = json.loads((out / stem).read_text())
    rest = ",".join(str(b) for b in whole["config"]["batch_sizes"] if str(b) != first)
    common = ["--dataset", "mnist10k", "--preset", "quick", "--hidden", "16", "--epochs", "2",
              "--seeds", "1", "--runs-dir", str(runs_dir), "--no-progress"]  # fmt: skip
    for name, batches in (("a", rest), ("b", first)):  # every run and measurement is reused
        argv = [*common, "--batch-sizes", batches, "--out", str(tmp_path / name)]
        assert experiment.main(module.SPEC, argv) == 0
    parts = [str(tmp_path / name / stem) for name in ("a", "b")]
    argv = [*common, "--out", str(tmp_path / "m"), "--merge", *parts]
    assert experiment.main(module.SPEC, argv) == 0
    merged = json.loads((tmp_path / "m" / stem).read_text())
    assert merged["config"]["batch_sizes"] == whole["config"]["batch_sizes"]
    assert merged["rows"] == whole["rows"] and merged["summary"] == whole["summary"]
    units = [[int(first)], [int(b) for b in rest.split(",")]]  # in unit order, not given order
    assert [p["units"] for p in merged["parts"]] == units


def test_remedy_rows_change_the_protocol_runs_by_one_remedy_each():
    from keskar_repro.training.protocol import sb_lb_configs

    configs, _ = sb_lb_configs("mnist", 60000, epochs=100)
    settings = experiment.parse(table_remedies.SPEC, ["--dataset", "mnist"])
    hoffer = table_remedies.remedy_config("LB Hoffer", configs, settings, 60000)
    assert (hoffer.epochs, hoffer.ghost_batch, hoffer.lr_scaling) == (2340, 128, "sqrt")
    assert hoffer.lr_base_batch == 256 and hoffer.method == "adam"
    sam = table_remedies.remedy_config("LB SAM", configs, settings, 60000, sam_rho=0.1)
    assert (sam.method, sam.sam_rho, sam.epochs) == ("sam", 0.1, 100)
    assert table_remedies.remedy_config("LB", configs, settings, 60000) == configs["LB"]
    sgd = table_remedies.remedy_config("SB SGD", configs, settings, 60000)
    assert (sgd.method, sgd.learning_rate, sgd.batch_size) == ("sgd", 0.1, 256)
    assert (sgd.weight_decay, sgd.lr_drops, sgd.momentum) == (1e-4, (10, 20, 30), 0.9)
    hoffer_sgd = table_remedies.remedy_config("LB Hoffer SGD", configs, settings, 60000)
    assert hoffer_sgd.lr_drops == (234, 468, 702) and hoffer_sgd.epochs == 2340


def test_remedies_table_chooses_rho_on_held_out_images_and_measures_every_run(made):
    out, runs, _ = made
    r = results(out, "table_remedies")
    rho = r["sam_rho"]
    assert [g["rho"] for g in rho["grid"]] == [0.05, 0.5] and rho["n_fit"] == 7200
    best = max(rho["grid"], key=lambda g: g["validation_accuracy"])["rho"]
    assert rho["rho"] == best and (runs / "holdout-0.1").is_dir()
    rows = {row["remedy"]: row for row in r["rows"]}
    assert list(rows) == ["SB", "LB", "LB SAM"]
    assert rows["LB SAM"]["method"] == "sam" and rows["LB"]["method"] == "adam"
    assert rows["SB"]["updates"] == 2 * (8000 // 34) and rows["LB"]["updates"] == 20
    for row in rows.values():
        curve = row["distance"]
        assert curve["epoch"] == [1, 2] and curve["updates"][1] == row["updates"]
        assert 0 < curve["distance"][0] < curve["distance"][1]
        assert row["notions"]["metric_2_1/0.001"] > 0
    # the SB and LB rows are the main script's runs and measurements
    main = {(x["regime"], x["space"], x["epsilon"]): x["value"]
            for x in results(out, "fig_sharpness")["sharpness"]}  # fmt: skip
    for regime in ("SB", "LB"):
        assert rows[regime]["notions"]["metric_2_1/0.001"] == main[regime, "full", 0.001]
    summary = r["summary"]
    assert summary["rows"]["LB"]["vs_LB"] == 0.0
    assert {(t["notion"], t["with"], t["n"]) for t in summary["tau"]} == {
        ("metric_2_1/0.001", "test_accuracy", 3),
        ("metric_2_1/0.001", "gap_accuracy", 3),
    }


def test_remedies_read_the_committed_conservative_and_warm_start_runs_as_rows():
    rows = table_remedies.committed_rows("mnist", 60000)
    table7 = json.loads((EXPERIMENTS.parent / "figures/table7_conservative_mnist_paper.json")
                        .read_text())  # fmt: skip
    conservative = [r for r in rows if r["remedy"] == "LB conservative"]
    assert len(conservative) == table7["config"]["seeds"] and conservative[0]["updates"] == 1000
    assert all(r["distance"] is None and "metric_2_1/0.001" in r["notions"] for r in rows)
    warm = {r["remedy"]: r for r in rows if r["remedy"].startswith("LB warm start")}
    assert warm["LB warm start k=1"]["updates"] == 234 + 1000  # one SB epoch, then 100 LB
    assert table_remedies.committed_rows("mnist10k_absent", 8000) == []
    summary = table_remedies.summarize({"rows": rows})
    assert summary["rows"]["LB conservative"]["seeds"] == len(conservative)
