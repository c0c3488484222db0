"""keskar_repro.report.experiment, the figure scripts' runner, on a fake figure that touches neither
JAX nor data: presets and options, impossible settings, the results JSON, --replot, the error
policy of `cli`, the frozen `Settings`, and the real scripts' `specs()`. (The scripts themselves:
tests/test_figure_scripts.py.)"""

import argparse
import json
import types
from pathlib import Path

import pytest

from keskar_repro.errors import UserError
from keskar_repro.report import experiment
from keskar_repro.report.experiment import FigureSpec
from keskar_repro.store import files

FAKE_ENVIRONMENT = {"versions": {"jax": "fake"}, "device": {"platform": "fake"}}


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, help="number of values")


def checks(settings: experiment.Settings) -> dict[str, bool]:
    return {"--n": settings.n >= 1}


def compute(settings: experiment.Settings, dataset, resolved: dict) -> dict:
    assert dataset.provenance == {"name": "fake"}
    resolved["resolved_note"] = f"{settings.n} values"  # what compute determined
    return {"values": list(range(settings.n))}


def summarize(results: dict) -> dict:
    return {"count": len(results["values"])}


def text(results: dict) -> str:
    return f"fake figure: {results['summary']['count']} values"


def draw(results: dict, settings: experiment.Settings) -> list[str]:
    path = experiment.figure_stem(settings, "fake_values") + ".txt"
    Path(path).write_text(" ".join(map(str, results["values"])))
    return [path]


def make_spec(**changes) -> FigureSpec:
    fields = dict(
        name="fig_fake",
        stem="fake",
        doc="A fake figure.\n\nNot shown by --help.",
        order=9,
        presets={"paper": {"n": 3}, "quick": {"n": 1}},
        compute=compute,
        summarize=summarize,
        text=text,
        draw=draw,
        options=options,
        checks=checks,
    )
    return FigureSpec(**{**fields, **changes})


@pytest.fixture
def fake_data(monkeypatch):
    """experiment.load_dataset replaced by a stand-in (default dataset: mnist10k), and the
    environment record by a constant: nothing imports JAX."""
    loaded = []

    def load_dataset(settings):
        loaded.append(settings.dataset)
        name = settings.dataset or "mnist10k"
        return types.SimpleNamespace(name=name, provenance={"name": "fake"})

    monkeypatch.setattr(experiment, "load_dataset", load_dataset)
    monkeypatch.setattr(files, "environment", lambda: FAKE_ENVIRONMENT)
    return loaded


def test_parse_fills_from_the_preset_and_an_option_overrides_it():
    spec = make_spec()
    assert experiment.parse(spec, []).n == 3  # --preset paper by default
    assert experiment.parse(spec, ["--preset", "quick"]).n == 1
    settings = experiment.parse(spec, ["--preset", "quick", "--n", "5", "--hidden", "8,4"])
    assert settings.n == 5 and settings.hidden == (8, 4) and settings.preset == "quick"
    assert settings.dataset is None and settings.runs_per_program is None and not settings.replot


def test_settings_are_frozen_and_replace_makes_a_copy():
    import dataclasses

    settings = experiment.parse(make_spec(), ["--n", "2"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.dataset = "mnist"
    with pytest.raises(TypeError):
        settings.options["n"] = 3  # a read-only mapping
    changed = settings.replace(dataset="mnist", n=4)
    assert (changed.dataset, changed.n) == ("mnist", 4) and (settings.dataset, settings.n) == (
        None,
        2,
    )
    assert settings.get("epsilons") is None
    with pytest.raises(AttributeError, match="no option 'epsilons'"):
        settings.epsilons  # noqa: B018


def test_a_preset_key_that_is_no_option_is_a_programming_error():
    spec = make_spec(presets={"paper": {"n": 3, "nn": 4}, "quick": {"n": 1}})
    with pytest.raises(ValueError, match="preset 'paper' of fig_fake sets 'nn': no such option"):
        experiment.parse(spec, [])
    assert experiment.parse(spec, ["--preset", "quick"]).n == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n", "0"], "--n=0 is impossible"),
        (["--hidden", "8,0"], "--hidden=(8, 0) is impossible"),
        (["--runs-per-program", "0"], "--runs-per-program=0 is impossible"),
        (["--preset", "huge"], "--preset: invalid choice: 'huge'"),
    ],
)
def test_an_impossible_setting_exits_with_status_2_naming_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        experiment.parse(make_spec(), argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: fig_fake.py") and message in err.splitlines()[-1]


def test_main_writes_one_results_json(tmp_path, fake_data, capsys):
    argv = ["--preset", "quick", "--n", "2", "--out", str(tmp_path), "--no-progress"]
    assert experiment.main(make_spec(), argv) == 0
    assert fake_data == [None]  # the default dataset was asked for, once
    path = tmp_path / "fake_mnist10k_quick.json"
    r = json.loads(path.read_text())
    assert r["command"] == "python experiments/fig_fake.py " + " ".join(argv)
    assert r["config"]["n"] == 2 and r["config"]["dataset"] == "mnist10k"
    assert r["config"]["preset"] == "quick" and r["config"]["hidden"] == [512] * 5
    assert r["config"]["resolved_note"] == "2 values"
    assert r["config"]["bn_policy"] is None and r["config"]["batch_note"] is None
    assert set(experiment.PROVENANCE_KEYS) <= set(r)
    assert "replot" not in r["config"] and "no_progress" not in r["config"]
    assert r["dataset"] == {"name": "fake"}
    assert r["values"] == [0, 1] and r["summary"] == {"count": 2}
    assert r["environment"] == FAKE_ENVIRONMENT
    assert 0 <= r["wall_seconds"] < 60
    drawn = tmp_path / "fake_values_mnist10k_quick.txt"
    assert drawn.read_text() == "0 1"
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [f"wrote {path}", "fake figure: 2 values", f"wrote {drawn}"]
    assert out[3].startswith("wall time ")


def test_replot_redraws_from_the_json_alone(tmp_path, fake_data, capsys):
    common = ["--dataset", "fashion_mnist", "--out", str(tmp_path)]
    experiment.main(make_spec(), common)  # paper preset: n = 3
    drawn = tmp_path / "fake_values_fashion_mnist_paper.txt"
    drawn.unlink()
    capsys.readouterr()

    def no_compute(settings, dataset, resolved):
        raise AssertionError("--replot computed")

    assert experiment.main(make_spec(compute=no_compute), [*common, "--replot"]) == 0
    assert fake_data == ["fashion_mnist"]  # the replot loaded no data
    assert drawn.read_text() == "0 1 2"
    assert capsys.readouterr().out == f"fake figure: 3 values\nwrote {drawn}\n"


def test_replot_without_results_is_a_user_error(tmp_path, fake_data):
    with pytest.raises(UserError, match="no results at .*fake_mnist_quick.json; run without"):
        experiment.main(make_spec(), ["--replot", "--dataset", "mnist", "--preset", "quick",
                                      "--out", str(tmp_path)])  # fmt: skip
    with pytest.raises(UserError, match="--replot needs --dataset"):
        experiment.main(make_spec(), ["--replot", "--out", str(tmp_path)])
    assert fake_data == [] and not list(tmp_path.iterdir())


def test_cli_prints_a_user_error_as_one_line_and_keeps_other_tracebacks(
    tmp_path, fake_data, capsys
):
    argv = ["--dataset", "mnist", "--out", str(tmp_path)]

    def user_error(settings, dataset, resolved):
        raise UserError("--n=3 needs more data; use --n 1")

    with pytest.raises(SystemExit) as exit_:
        experiment.cli(make_spec(compute=user_error), argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: --n=3 needs more data; use --n 1\n"

    def bug(settings, dataset, resolved):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        experiment.cli(make_spec(compute=bug), argv)
    assert not list(tmp_path.iterdir())  # neither wrote a results JSON

    with pytest.raises(SystemExit) as exit_:
        experiment.cli(make_spec(), argv)
    assert exit_.value.code == 0 and (tmp_path / "fake_mnist_paper.json").is_file()


def test_a_spec_without_options_has_only_the_common_ones():
    plain = make_spec(options=experiment._no_options, checks=experiment._no_checks,
                      presets={"paper": {}, "quick": {}})  # fmt: skip
    assert experiment.parser(plain).description == "A fake figure."
    with pytest.raises(SystemExit):
        experiment.parse(plain, ["--n", "2"])  # not an option of this script
    assert experiment.parse(plain, []).options == {}


def test_specs_are_the_scripts_in_make_all_order():
    specs = experiment.specs()
    names = [s.name for s in specs]
    assert names[0] == "fig_sharpness"  # the runs every other figure reuses
    assert names[-1] == "fig_sharpness_notions"  # --population all: every run trained before
    assert len(set(names)) == len(names) and len({s.stem for s in specs}) == len(specs)
    assert [s.order for s in specs] == sorted(s.order for s in specs)
    assert {"fig_accuracy_curves", "fig_batch_sweep", "sharpness_report"} <= set(names)
    for spec in specs:
        assert (experiment.EXPERIMENTS / f"{spec.name}.py").is_file()
        assert sorted(spec.presets) == ["paper", "quick"], spec.name
        dests = vars(experiment.parser(spec).parse_args([]))
        for preset, values in spec.presets.items():
            assert set(values) <= set(dests), (spec.name, preset)  # every key is an option
            experiment.parse(spec, ["--preset", preset])  # and passes the script's checks
        source = (experiment.EXPERIMENTS / f"{spec.name}.py").read_text()
        assert "globals()" not in source and "Namespace" not in source, spec.name


def test_the_init_choices_are_the_models_initialisers():
    from keskar_repro.training.models import KERNEL_INITS

    assert set(experiment.KERNEL_INIT_NAMES) == set(KERNEL_INITS)


# -- a figure measured in parts (FigureSpec.parts, --merge) ----------------------------------


def parted_options(p: argparse.ArgumentParser) -> None:
    options(p)
    p.add_argument("--first", type=int, default=0, help="first unit")


def parted_compute(settings: experiment.Settings, dataset, resolved: dict) -> dict:
    return {"values": [{"unit": u, "square": u * u} for u in parted_units(settings.config())]}


def parted_units(config: dict) -> list[int]:
    if config.get("units") is not None:
        return config["units"]
    return list(range(config["first"], config["first"] + config["n"]))


PARTS = experiment.Parts(
    units=lambda results: parted_units(results["config"]),
    field="units",
    what="units",
    lists=("values",),
    free=("first", "n"),
    count="n",
)


def parted_spec(**changes) -> FigureSpec:
    fields = dict(options=parted_options, compute=parted_compute, parts=PARTS)
    return make_spec(**{**fields, **changes})


def run_part(tmp_path: Path, name: str, *argv: str) -> Path:
    out = tmp_path / name
    experiment.main(parted_spec(), ["--dataset", "mnist", "--out", str(out), *argv])
    return out / "fake_mnist_paper.json"


def test_parts_merged_are_the_figure_measured_at_once(tmp_path, fake_data, capsys):
    whole = json.loads(run_part(tmp_path, "whole", "--n", "3").read_text())
    a = run_part(tmp_path, "a", "--n", "2")
    b = run_part(tmp_path, "b", "--first", "2", "--n", "1")
    loaded = len(fake_data)

    def no_compute(settings, dataset, resolved):
        raise AssertionError("--merge computed")

    merged_dir = tmp_path / "merged"
    argv = ["--dataset", "mnist", "--out", str(merged_dir), "--merge", str(b), str(a)]
    assert experiment.main(parted_spec(compute=no_compute), argv) == 0
    assert len(fake_data) == loaded  # the merge loaded no data
    m = json.loads((merged_dir / "fake_mnist_paper.json").read_text())
    assert m["values"] == whole["values"] == [{"unit": u, "square": u * u} for u in range(3)]
    assert m["summary"] == whole["summary"] == {"count": 3}
    assert m["config"]["units"] == [0, 1, 2] and m["config"]["n"] == 3
    assert m["config"]["first"] is None
    assert m["command"] == "python experiments/fig_fake.py " + " ".join(argv)
    assert [p["file"] for p in m["parts"]] == [str(a), str(b)]  # in unit order
    assert [p["units"] for p in m["parts"]] == [[0, 1], [2]]
    parts = [json.loads(p.read_text()) for p in (a, b)]
    assert m["wall_seconds"] == sum(p["wall_seconds"] for p in parts)
    assert (merged_dir / "fake_values_mnist_paper.txt").is_file()
    assert f"wrote {merged_dir / 'fake_mnist_paper.json'} (2 parts)" in capsys.readouterr().out


def test_units_of_two_kinds_merge_numbers_first_through_the_merged_hook():
    def units(results):
        return [*results["config"]["seeds"], *results["config"]["names"]]

    def merged(union):
        seeds = [u for u in union if not isinstance(u, str)]
        return {"seeds": seeds, "names": [u for u in union if isinstance(u, str)], "n": len(seeds)}

    parts = experiment.Parts(units=units, field="seeds", what="units", lists=("rows",),
                             free=("first",), merged=merged)  # fmt: skip

    def part(seeds, names):
        rows = [*seeds, *names]
        config = {"seeds": seeds, "names": names, "first": 7, "n": len(seeds)}
        return {"config": config, "rows": rows, "command": "c", "started": "s", "wall_seconds": 1}

    loaded = [
        ("c.json", part([], ["b", "a"])),
        ("b.json", part([2], [])),
        ("a.json", part([0], [])),
    ]
    m = experiment.merge_parts(parts, loaded)
    assert m["config"] == {"seeds": [0, 2], "names": ["a", "b"], "first": None, "n": 2}
    assert m["rows"] == [0, 2, "b", "a"]  # parts in unit order, each part's rows as measured
    assert [p["file"] for p in m["parts"]] == ["a.json", "b.json", "c.json"]
    assert sorted([3, "x", 1, "a"], key=experiment.unit_order) == [1, 3, "a", "x"]


def test_a_union_setting_may_differ_between_parts_and_the_merge_keeps_every_value():
    parts = experiment.Parts(units=lambda r: r["config"]["seeds"], field="seeds", what="seeds",
                             lists=("rows",), unions=("eps",))  # fmt: skip

    def part(seeds, eps):
        config = {"dataset": "mnist", "preset": "paper", "seeds": seeds, "eps": eps, "n": 8}
        return {"config": config, "dataset": {"name": "mnist"}, "rows": seeds, "command": "c",
                "started": "s", "wall_seconds": 1}  # fmt: skip

    loaded = [("b.json", part([2], [1e-3])), ("a.json", part([0, 1], [5e-4, 1e-3, 2e-3]))]
    settings = experiment.Settings(
        "mnist", None, "paper", (512,), "glorot_uniform", ".", None, None
    )
    experiment.check_parts(parts, loaded, settings)  # eps may differ, n may not
    assert experiment.merge_parts(parts, loaded)["config"]["eps"] == [5e-4, 1e-3, 2e-3]
    loaded.append(("c.json", part([3], [1e-2])))
    assert experiment.merge_parts(parts, loaded)["config"]["eps"] == [5e-4, 1e-3, 2e-3, 1e-2]
    loaded[-1][1]["config"]["n"] = 9
    with pytest.raises(UserError, match="c.json differs from .* in n; parts must differ only"):
        experiment.check_parts(parts, loaded, settings)


@pytest.mark.parametrize(
    "second, edit, message",
    [
        (("--first", "1", "--n", "2"), None, "units 1 is in both"),
        (("--first", "2", "--hidden", "8"), None, "differs from .* in hidden; parts must differ"),
        (("--first", "2", "--preset", "quick"), None, "is mnist preset quick, not --dataset mnist"),
        (("--first", "2",), {"dataset": {"name": "other"}}, "measured on other data files"),
    ],
)  # fmt: skip
def test_parts_that_do_not_fit_are_refused_before_anything_is_written(
    tmp_path, fake_data, second, edit, message
):
    a = run_part(tmp_path, "a", "--n", "2")
    out = tmp_path / "b"
    experiment.main(parted_spec(), ["--dataset", "mnist", "--out", str(out), *second])
    b = next(out.glob("*.json"))
    if edit:
        b.write_text(json.dumps({**json.loads(b.read_text()), **edit}))
    merged = tmp_path / "merged"
    with pytest.raises(UserError, match=message):
        experiment.main(
            parted_spec(), ["--dataset", "mnist", "--out", str(merged), "--merge", str(a), str(b)]
        )
    assert not merged.exists()


def test_merge_of_a_missing_part_is_a_user_error(tmp_path, fake_data):
    with pytest.raises(UserError, match="no results at .*n.json; give the results JSON"):
        experiment.main(parted_spec(), ["--dataset", "mnist", "--merge", str(tmp_path / "n.json")])
    with pytest.raises(UserError, match="--merge needs --dataset"):
        experiment.main(parted_spec(), ["--merge", str(tmp_path / "nope.json")])


def test_only_a_figure_with_parts_has_merge(tmp_path):
    with pytest.raises(SystemExit):
        experiment.parse(make_spec(), ["--merge", "a.json"])
    assert experiment.parse(parted_spec(), ["--merge", "a.json"]).merge == ("a.json",)
