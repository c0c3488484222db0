"""README.md, and the text files around it: short, their numbers from the committed JSON, their
links alive, and no talk of the project's issues (history belongs in CHANGELOG.md).

The README's headline table is experiments/results_table.py's output for the full-MNIST results
JSON, row for row; every other number on the README (outside code and the "Two commands" section,
whose runtimes are measured on a fresh clone and kept by hand) is built from a JSON as in
tests/test_explanation.py. Reads JSON only (no JAX), except the README's example, which runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_explanation import (
    MAIN,
    collapsed,
    config,
    gap,
    lb_sharper,
    load,
    n_train,
    numbers,
    paper_value,
    results_table,
    signed,
)

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 120
HEADLINE_ROWS = [
    "seeds",
    "test accuracy (%)",
    "train accuracy (%)",
    "sharpness, full, eps 0.001",
    "sharpness, full, eps 0.0005",
    "sharpness, 100-d Gaussian A, eps 0.001",
    "sharpness, 100-d Gaussian A, eps 0.0005",
]
# The text files of the repository that are prose for a reader, not history.
PROSE = [
    "README.md",
    "paper_notes.md",
    "figures/README.md",
    "benchmarks/README.md",
    *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md")),
]
ISSUE = re.compile(r"\bissues?[ -]?#?\d+", re.IGNORECASE)


def readme() -> str:
    return README.read_text()


def section(text: str, heading: str) -> str:
    """The text of the `## heading` section, up to the next `## ` heading."""
    start = text.index(f"\n## {heading}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def headline_table(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| quantity | paper SB |"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return lines[start:end]


def test_readme_is_short():
    assert len(readme().splitlines()) <= MAX_LINES


def test_headline_table_is_results_tables_output_for_the_json():
    """A number changed by hand, or the JSON re-measured without the README, fails here."""
    results = json.loads((ROOT / "figures" / f"{MAIN}.json").read_text())
    printed = results_table.markdown([results]).splitlines()
    ours = headline_table(readme())
    assert ours[:2] == printed[:2], "the header of results_table.py's table"
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in printed[2:]}
    assert [line.split(" | ")[0].removeprefix("| ") for line in ours[2:]] == HEADLINE_ROWS
    for line in ours[2:]:
        label = line.split(" | ")[0].removeprefix("| ")
        assert line == rows[label], f"README row {label!r} differs from the JSON's"


README_CLAIMS = [
    ("(five hidden layers of {} units", lambda: (config()["hidden"][0],)),
    (
        "small-batch ({}) and large-batch ({:g}% of the training set)",
        lambda: (config()["sb_batch"], 100 * config()["lb_batch"] / n_train()),
    ),
    (
        "{:,} training and {:,} test images, SB {} against LB {}, {} seeds of {} epochs each",
        lambda: (
            n_train(),
            load(MAIN)["dataset"]["n_test"],
            config()["sb_batch"],
            config()["lb_batch"],
            config()["seeds"],
            config()["epochs"],
        ),
    ),
    (
        "(SB - LB {} points; the paper {})",
        lambda: (
            signed(gap(MAIN)["sb_minus_lb"]),
            signed(paper_value("test_accuracy", "SB") - paper_value("test_accuracy", "LB")),
        ),
    ),
    (
        "in {} seeds at both epsilons",
        lambda: (
            lb_sharper(MAIN, "full/0.001")
            if lb_sharper(MAIN, "full/0.001") == lb_sharper(MAIN, "full/0.0005")
            else "(not both)",
        ),
    ),
    (
        "Python {python}, jax {jax}, flax {flax}, optax {optax}, numpy {numpy} and scipy {scipy}",
        lambda: (),
    ),
]


def environment() -> dict:
    env = load(MAIN)["environment"]
    return {"python": env["python"], **env["versions"]}


def readme_fill(template: str, values) -> str:
    return template.format(*values(), **environment())


@pytest.mark.parametrize("template, values", README_CLAIMS, ids=[t[:40] for t, _ in README_CLAIMS])
def test_readme_claims_are_the_jsons(template, values):
    assert readme_fill(template, values) in collapsed(readme())


def test_every_readme_number_comes_from_a_json():
    text = readme()
    text = text.replace(section(text, "Two commands"), "")  # runtimes measured by hand
    text = text.replace("\n".join(headline_table(text)), "")  # checked above
    claimed = {n for t, v in README_CLAIMS for n in numbers(readme_fill(t, v))}
    unclaimed = sorted(set(numbers(text)) - claimed)
    assert not unclaimed, f"README numbers that no JSON backs: {unclaimed}"


def test_readme_example_runs(capsys):
    (code,) = re.findall(r"```python\n(.*?)```", readme(), re.DOTALL)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    assert "%" in capsys.readouterr().out


@pytest.mark.parametrize("name", PROSE)
def test_no_issue_numbers(name):
    found = ISSUE.findall((ROOT / name).read_text())
    assert not found, f"{name} speaks of the project's issues ({found}): describe the change"


def test_no_issue_numbers_in_the_changelog():
    assert not ISSUE.findall((ROOT / "CHANGELOG.md").read_text())


LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's (and MyST's) anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE)}


LINKED = ["README.md", "paper_notes.md", "CHANGELOG.md", "figures/README.md"] + sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / "docs" / "explanation").glob("*.md")
)


@pytest.mark.parametrize("name", LINKED)
def test_relative_links_resolve(name):
    """Every relative link and anchor exists. The documentation site's own pages (docs/ outside
    docs/explanation/) are checked once the site is in the tree (docs/conf.py)."""
    page = ROOT / name
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        site_page = file.is_relative_to(ROOT / "docs") and not file.is_relative_to(
            ROOT / "docs" / "explanation"
        )
        if site_page and not (ROOT / "docs" / "conf.py").exists():
            continue
        assert file.exists(), f"{name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(file), f"{name}: no heading for #{anchor} in {path or name}"
