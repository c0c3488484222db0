"""docs/: every Python block of every page runs, section by section, so the examples cannot go
stale (each `## ` section is one namespace, its blocks executed top to bottom). Every page under
docs/ is read, in every folder; pages without Python blocks (the report) add nothing. The
tutorial notebook's ```{code-cell} blocks are not ```python blocks: tests/test_docs_site.py runs
it as a whole."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
SKIP = ("_build", "_autosummary", "jupyter_execute")  # build outputs, not pages


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if not any(part in SKIP for part in p.parts))


def sections() -> list[tuple[str, str]]:
    found = []
    for page in pages():
        name = page.relative_to(DOCS).as_posix()
        for part in page.read_text().split("\n## ")[1:]:
            title, _, body = part.partition("\n")
            code = "\n".join(BLOCK.findall(body))
            if code:
                found.append((f"{name}: {title}", code))
    return found


def test_every_page_has_examples():
    found = sections()
    assert len(found) >= 3
    # the how-to guides are read too (subfolders)
    assert any(title.startswith("howto/") for title, _ in found)


@pytest.mark.parametrize("title, code", sections(), ids=[t for t, _ in sections()])
def test_example_runs(title, code, capsys):
    exec(compile(code, title, "exec"), {"__name__": f"docs_example_{abs(hash(title))}"})
    assert capsys.readouterr().out  # every example shows its result
