"""The API reference: every module of the package, its docstrings shown as written.

- Docstrings. keskar_repro's docstrings are plain text with aligned formulas
  (`phi = 100 * (...)`), not reStructuredText: parsed as reST, their `*`, backquotes and
  indented lines become emphasis, interpreted text and block quotes, with warnings. An
  autodoc-process-docstring hook keeps each docstring's first paragraph as prose (every reST
  markup character escaped, so autosummary's one-line summaries read as written) and shows the
  rest verbatim in a preformatted block.
- Modules. `package-modules PACKAGE` is autosummary over every module of PACKAGE, found when the
  site is built (pkgutil), so a new module gets its page without an edit here; the module pages
  (reference/_autosummary/, not committed) are written when the build starts, from
  _templates/autosummary/module.rst.
- Re-exports. `module-exports MODULE` lists the names of MODULE's `__all__`, each linked to the
  page of the module that defines it (keskar_repro.sharpness).
"""

from __future__ import annotations

import importlib
import pkgutil
import posixpath
import re
import tempfile
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.ext.autosummary import Autosummary
from sphinx.ext.autosummary.generate import generate_autosummary_docs
from sphinx.util.docutils import SphinxDirective

PACKAGE = "keskar_repro"
STUBS = "reference/_autosummary"  # the module pages, under the source folder

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


def modules_of(package: str) -> list[str]:
    """The modules (not subpackages) of `package`, by name."""
    path = importlib.import_module(package).__path__
    return sorted(f"{package}.{m.name}" for m in pkgutil.iter_modules(path) if not m.ispkg)


def subpackages() -> list[str]:
    path = importlib.import_module(PACKAGE).__path__
    return sorted(f"{PACKAGE}.{m.name}" for m in pkgutil.iter_modules(path) if m.ispkg)


class PackageModules(Autosummary):
    """`package-modules PACKAGE`: the autosummary table (and toctree) of every module of PACKAGE.
    Put it after `automodule:: PACKAGE`, which makes PACKAGE the current module."""

    required_arguments = 1
    has_content = False
    option_spec = {}

    def run(self) -> list[nodes.Node]:
        package = self.arguments[0]
        current = self.env.ref_context.get("py:module")
        names = [m.removeprefix(f"{package}.") if current == package else m
                 for m in modules_of(package)]  # fmt: skip
        self.content = StringList(names, source=f"package-modules {package}")
        here = posixpath.dirname(self.env.docname)
        self.options["toctree"] = posixpath.relpath(STUBS, here or ".")
        return super().run()


def write_module_pages(app) -> None:
    """builder-inited: the page of every module of every subpackage, before the sources are
    read (autosummary's own generation sees only the modules written in a page's source)."""
    names = [m for package in subpackages() for m in modules_of(package)]
    folder = Path(app.srcdir) / STUBS
    for page in folder.glob("*.rst"):  # a module that is gone: its page goes too
        if page.stem not in names:
            page.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "modules.rst"
        lines = [".. autosummary::", "   :toctree: stubs", ""] + [f"   {n}" for n in names]
        index.write_text("\n".join(lines) + "\n")
        generate_autosummary_docs(
            [str(index)],
            output_dir=folder,
            suffix=".rst",
            app=app,
            overwrite=app.config.autosummary_generate_overwrite,
        )


def setup(app):
    app.add_directive("module-exports", ModuleExports)
    app.add_directive("package-modules", PackageModules)
    app.connect("builder-inited", write_module_pages)
    app.connect("autodoc-process-docstring", process_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
