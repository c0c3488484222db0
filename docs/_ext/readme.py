"""`readme-section HEADING`: a section of the repository's README.md, parsed as MyST Markdown.

The lines after the README's `## ` heading that starts with HEADING, up to its next `## `
heading, become part of the page: one home for the README's commands and runtimes, and a
README rewritten around that section still builds (a missing heading is a build error).
"""

from __future__ import annotations

from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

README = Path(__file__).resolve().parents[2] / "README.md"


def section(text: str, heading: str) -> list[str]:
    """The lines of the `## HEADING...` section of `text`, without the heading."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(f"## {heading}")]
    if len(starts) != 1:
        raise ValueError(f"README.md has {len(starts)} sections headed '## {heading}...'")
    body = lines[starts[0] + 1 :]
    end = next((i for i, line in enumerate(body) if line.startswith("## ")), len(body))
    return body[:end]


class ReadmeSection(SphinxDirective):
    required_arguments = 1
    final_argument_whitespace = True

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(str(README))
        try:
            lines = section(README.read_text(), self.arguments[0])
        except ValueError as err:
            raise self.error(str(err)) from err
        container = nodes.container(classes=["readme-section"])
        self.state.nested_parse(StringList(lines, str(README)), 0, container)
        return container.children


def setup(app):
    app.add_directive("readme-section", ReadmeSection)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
