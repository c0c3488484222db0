"""docs/: every Python block of every page runs, section by section, so the examples cannot go
stale (each `## ` section is one namespace, its blocks executed top to bottom)."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def sections() -> list[tuple[str, str]]:
    found = []
    for page in sorted(DOCS.glob("*.md")):
        for part in page.read_text().split("\n## ")[1:]:
            title, _, body = part.partition("\n")
            code = "\n".join(BLOCK.findall(body))
            if code:
                found.append((f"{page.name}: {title}", code))
    return found


def test_every_page_has_examples():
    assert len(sections()) >= 3


@pytest.mark.parametrize("title, code", sections(), ids=[t for t, _ in sections()])
def test_example_runs(title, code, capsys):
    exec(compile(code, title, "exec"), {"__name__": f"docs_example_{abs(hash(title))}"})
    assert capsys.readouterr().out  # every example shows its result
