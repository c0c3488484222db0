"""The package's docstrings, shown as written.

keskar_repro's docstrings are plain text with aligned formulas (`phi = 100 * (...)`), not
reStructuredText: parsed as reST, their `*`, backquotes and indented lines become emphasis,
interpreted text and block quotes, with warnings. This hook keeps each docstring's first
paragraph as prose (every reST markup character escaped, so autosummary's one-line summaries
read as written) and shows the rest verbatim in a preformatted block.
"""

from __future__ import annotations

import importlib
import re

from docutils import nodes
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective

# characters with a meaning in reST inline markup; a backslash makes each literal
MARKUP = re.compile(r"([\\`*_|\[\]<>:])")


def escape(text: str) -> str:
    """`text` with every reST markup character escaped; a leading character that would start
    a list, a heading or a field is escaped too."""
    text = MARKUP.sub(r"\\\1", text)
    if text and not text[0].isalnum() and text[0] != "\\":
        text = "\\" + text
    return text


def verbatim(lines: list[str]) -> list[str]:
    """reST lines for a docstring's lines: the first paragraph escaped on one line, then the
    rest (if any) as a literal block, its indentation and line breaks kept."""
    while lines and not lines[0].strip():
        lines = lines[1:]
    if not lines:
        return []
    end = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
    first = " ".join(line.strip() for line in lines[:end])
    rest = lines[end:]
    while rest and not rest[0].strip():
        rest = rest[1:]
    while rest and not rest[-1].strip():
        rest = rest[:-1]
    out = [escape(first), ""]
    if rest:
        out += ["::", ""] + [f"    {line}" if line.strip() else "" for line in rest] + [""]
    return out


def process_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    """autodoc-process-docstring: replace `lines` in place by their verbatim reST."""
    lines[:] = verbatim(list(lines))


class ModuleExports(SphinxDirective):
    """`module-exports MODULE`: a list of the names in MODULE's `__all__`, each linked to where
    it is defined (for a module that re-exports another's API)."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module = importlib.import_module(self.arguments[0])
        items = nodes.bullet_list()
        for name in module.__all__:
            home = getattr(getattr(module, name), "__module__", None)  # None: a constant
            link = addnodes.pending_xref(
                "",
                nodes.literal(name, name, classes=["xref", "py", "py-obj"]),
                refdomain="py",
                reftype="obj",
                reftarget=f"{home or module.__name__}.{name}",
                refexplicit=True,
                refwarn=home is not None,  # a function or class must have its page
                refdoc=self.env.docname,
            )
            para = nodes.paragraph()
            para += link
            item = nodes.list_item()
            item += para
            items += item
        return [items]


def setup(app):
    app.add_directive("module-exports", ModuleExports)
    app.connect("autodoc-process-docstring", process_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
