"""The documentation site (docs/): it builds with every warning an error, its tutorial runs, and
no number on a report page is typed by hand.

The build runs without executing the tutorial (`-D nb_execution_mode=off`); the tutorial is
executed here as a script instead (jupytext), which is what the build's execution would run.
The Python blocks of the other pages are run by tests/test_docs.py.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pkgutil
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
REPORT = DOCS / "report"
BUILD_PACKAGES = ("sphinx", "myst_nb", "sphinx_book_theme", "sphinx_copybutton")


def missing_build_packages() -> list[str]:
    return [name for name in BUILD_PACKAGES if importlib.util.find_spec(name) is None]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built from scratch with `-W`, the tutorial not executed: its html folder."""
    missing = missing_build_packages()
    if missing:
        pytest.skip(
            f"the docs packages are not installed ({', '.join(missing)}): pip install -e '.[docs]'"
        )
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    command = [sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-b", "html"]
    command += [
        "-D",
        "nb_execution_mode=off",
        "-d",
        str(out / "doctrees"),
        str(DOCS),
        str(out / "html"),
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return out / "html"


def text_of(html: Path) -> str:
    """The visible text of a built page, tags stripped, whitespace collapsed."""
    body = re.sub(r"<script.*?</script>|<style.*?</style>", " ", html.read_text(), flags=re.S)
    body = re.sub(r"</(p|div|td|th|li|h\d|pre)>", " ", body)  # block ends: a space
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", body)))


def test_site_builds_with_warnings_as_errors(site):
    for page in ("index", "getting-started", "tutorials/first-gap", "report/index", "search"):
        assert (site / f"{page}.html").is_file(), page
    assert (site / "searchindex.js").stat().st_size > 1000  # Sphinx's built-in search works


def test_footer_shows_the_package_version(site):
    import keskar_repro

    for page in ("index", "report/table3", "reference/measures"):
        assert f"keskar-repro {keskar_repro.__version__}" in text_of(site / f"{page}.html"), page


def test_getting_started_has_a_copyable_install_line(site):
    html = (site / "getting-started.html").read_text()
    assert "copybutton" in html  # sphinx-copybutton's script on the page
    readme = (REPO / "README.md").read_text()
    commands = [
        line.strip() for line in readme.splitlines() if line.startswith("    python3 -m venv")
    ]
    assert len(commands) == 2  # the README's two commands, quoted on the page as they are
    page = text_of(site / "getting-started.html")
    for command in commands:
        assert command in page


def test_pages_cross_link(site):
    index = (site / "index.html").read_text()
    for target in ("getting-started.html", "tutorials/first-gap.html", "report/index.html",
                   "explanation/index.html", "reference/index.html"):  # fmt: skip
        assert f'href="{target}' in index, target
    table2 = (site / "report" / "table2.html").read_text()
    assert 'href="figure2.html' in table2


def test_report_numbers_are_the_json_numbers(site):
    """Spot checks of the rendering: the headline table is results_table.markdown's cells, the
    paper's numbers keskar_repro.report.paper's."""
    sys.path.insert(0, str(REPO / "experiments"))
    results_table = importlib.import_module("results_table")
    from keskar_repro.report import paper

    results = json.loads((REPO / "figures" / "fig_sharpness_mnist_paper.json").read_text())
    page = text_of(site / "report" / "table2.html")
    for label, _, cells in results_table.rows([results]):
        if "sharpness" in label:  # Table 2's page shows the accuracy rows
            continue
        for pair in cells[0]:
            if pair is not None:
                assert results_table.pm(pair) in page
    assert paper.plus_minus(paper.PAPER_F1["test_accuracy"]["LB"], 2) in page
    for run in results["runs"]:
        assert f"{run['test_accuracy']:.2%}" in page  # the per-seed table


def test_every_module_has_a_reference_page(site):
    import keskar_repro

    modules = [m.name for m in pkgutil.walk_packages(keskar_repro.__path__, "keskar_repro.")]
    generated = site / "reference" / "_autosummary"
    for name in modules:
        subpackage = name.count(".") == 1 and (REPO / name.replace(".", "/")).is_dir()
        if subpackage or name in ("keskar_repro.sharpness", "keskar_repro.errors"):
            continue
        assert (generated / f"{name}.html").is_file(), f"{name} is in no page of docs/reference/"


def test_tutorial_runs_as_a_script(capsys):
    """docs/tutorials/first-gap.md converted by jupytext and executed: it trains, measures and
    plots (the build executes the same cells in a kernel)."""
    jupytext = pytest.importorskip("jupytext", reason="pip install -e '.[docs]'")
    import matplotlib.pyplot as plt

    script = jupytext.writes(jupytext.read(DOCS / "tutorials" / "first-gap.md"), fmt="py:percent")
    assert "\n%" not in script  # IPython magics are commented out by jupytext
    plt.close("all")
    namespace = {"__name__": "first_gap"}
    exec(compile(script, "first-gap.md", "exec"), namespace)
    out = capsys.readouterr().out
    for expected in ("SB - LB test accuracy", "Metric 2.1 =", "LB / SB", "alpha +2.00"):
        assert expected in out
    assert namespace["phi"]["LB"].value > 0 and namespace["phi"]["SB"].value > 0
    assert len(namespace["path"]["alpha"]) == 13
    assert len(plt.get_fignums()) >= 2  # the accuracy curves and the parametric plot
    plt.close("all")


# -- no hand-typed numbers on the report pages --------------------------------------------------

# What may remain of a report page once its fenced blocks (directives, code), roles, maths,
# images and inline code are removed: prose. A decimal, a percentage, a power of ten or a
# number with thousands separators there was typed by hand.
FENCE = re.compile(r"^(```|:::).*?^\1\s*$", re.S | re.M)
ROLE = re.compile(r"\{[\w:-]+\}`[^`]*`")
MATH = re.compile(r"\$[^$]*\$")
IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
CODE = re.compile(r"`[^`]*`")
NUMBER = re.compile(r"\d+\.\d+|\d+(?:\.\d+)?e[-+]?\d+|\d+\s*%|\d{1,3}(?:,\d{3})+|\d+\s*x\b")
NAMES = re.compile(r"Metric 2\.1")  # the paper's name of its measure, not a result


def prose(text: str) -> str:
    for pattern in (FENCE, ROLE, MATH, IMAGE, CODE, NAMES):
        text = pattern.sub(" ", text)
    return text


def test_prose_filter_catches_typed_numbers():
    assert NUMBER.search(prose("LB is 446x sharper"))
    assert NUMBER.search(prose("test accuracy 98.38 +- 0.04"))
    assert NUMBER.search(prose("it took 7,973 s"))
    assert not NUMBER.search(prose("{result}`f.json:a.b:.2f` under Metric 2.1, `eps 1e-3`"))
    assert not NUMBER.search(prose("```{results-table} f.json\n:rows: 0.001\n```\n"))


@pytest.mark.parametrize("page", sorted(p.name for p in REPORT.glob("*.md")))
def test_report_page_has_no_typed_numbers(page):
    text = (REPORT / page).read_text()
    typed = NUMBER.findall(prose(text))
    assert not typed, (
        f"report/{page} types {typed}: render them from the JSON (docs/_ext/results.py)"
    )
    if page != "index.md":  # every page renders its numbers from a committed JSON
        assert re.search(r"```\{results-[a-z]+\}", text)


def test_docs_readme_build_time_is_the_json_one():
    record = json.loads((REPO / "benchmarks" / "docs_build_cpu.json").read_text())
    readme = (DOCS / "README.md").read_text()
    assert not record.get("provisional")
    for key in ("full_build", "build_no_execution", "tutorial"):
        assert f"{record[key]['wall_seconds']:.0f} s" in readme, key
    assert f"{record['environment']['cpu_count']} cores" in readme
    assert f"load average {record['load_average_at_start']:.1f}" in readme
