"""Numbers on the report pages, rendered at build time from the committed results JSON.

No number of a report page is typed by hand: each comes from a results JSON under figures/
(or benchmarks/), through the code that already prints it (experiments/results_table.py, each
figure script's `text`, keskar_repro.report.paper), or from one value of the JSON.

Directives (MyST: ```{name} argument, then :option: lines, then content):

    results-table JSON [JSON ...]   Tables 2, 3 and 4: the paper's SB and LB columns, then SB
        :rows: accuracy, full       and LB for each JSON (results_table.markdown); :rows:
                                    keeps the rows whose quantity contains one of the words
    paper-table TABLE               the paper's F1 numbers of Table 2, 3, 4 or 7
                                    (keskar_repro.report.paper)
    results-text JSON               what the figure script that wrote JSON prints
                                    (its FigureSpec.text), as a preformatted block
    results-rows JSON               one row per entry of a list in the JSON:
        :list: sharpness            the list (a path, below)
        :where: space=full          only entries whose fields have these values (a|b: either)
        :index: seed                pivoted: one row per value of the :index: fields, one
        :pivot: regime, epsilon     column per value of the :pivot: fields, cells :value:
                                    in :format:
        :value: value
        :format: .3g
      or, without :index:, content lines "header | path | format", one per column
    results-provenance JSON         command, start, wall time, parts, device, host, versions

Roles:

    {result}`JSON:path:format`      one value; format is Python's (".2f", ".1%", ",.0f") or
                                    "pm" (a [mean, std] pair, as results_table.pm writes it)
    {paper}`KEY REGIME`             one of the paper's mean +- std, e.g. `test_accuracy SB`,
                                    `table7/test_accuracy LB-conservative`

A path is dot-separated: keys (`summary.accuracy`), list indices (`history.test_accuracy.-1`),
quoted keys for keys with dots (`sharpness.'0.001'`), and selections of one list entry
(`summary.sharpness[regime=LB,space=full,epsilon=0.001].mean`).
"""

from __future__ import annotations

import importlib
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective, SphinxRole

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(EXPERIMENTS) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS))

from keskar_repro.report import experiment, paper  # noqa: E402

results_table = importlib.import_module("results_table")


class ResultsError(ValueError):
    """A results JSON, path or format that a page names does not exist or does not fit."""


# -- reading the JSON --------------------------------------------------------------------------


def json_path(name: str) -> Path:
    """The committed file `name`: under figures/, or under the repository root when the name
    starts with a folder (e.g. "benchmarks/table_cpu.json")."""
    path = REPO / name if "/" in name else REPO / "figures" / name
    if not path.is_file():
        raise ResultsError(f"no results file {path.relative_to(REPO)}")
    return path


_CACHE: dict[Path, tuple[float, Any]] = {}


def load(name: str) -> Any:
    """The parsed JSON `name` (cached while the file is unchanged)."""
    path = json_path(name)
    stamp = path.stat().st_mtime
    if path not in _CACHE or _CACHE[path][0] != stamp:
        _CACHE[path] = (stamp, json.loads(path.read_text()))
    return _CACHE[path][1]


_SEGMENT = re.compile(r"'([^']*)'|([^.\[\]']+)|\[([^\]]*)\]")


def _segments(path: str) -> list[tuple[str, str]]:
    """("key" | "select", text) for each segment of a path."""
    found, pos = [], 0
    while pos < len(path):
        if path[pos] == ".":
            pos += 1
            continue
        match = _SEGMENT.match(path, pos)
        if match is None:
            raise ResultsError(f"cannot read the path {path!r} at {path[pos:]!r}")
        quoted, plain, select = match.groups()
        found.append(("select", select) if select is not None else ("key", quoted or plain))
        pos = match.end()
    return found


def same(value: Any, wanted: str) -> bool:
    """Whether a JSON value equals the text `wanted` (numbers compared as numbers)."""
    if isinstance(value, bool) or value is None:
        return str(value) == wanted
    if isinstance(value, int | float):
        try:
            return math.isclose(float(value), float(wanted), rel_tol=1e-12)
        except ValueError:
            return False
    return str(value) == wanted


def conditions(text: str) -> list[tuple[str, str]]:
    """ "a=1, b=x" -> [("a", "1"), ("b", "x")]."""
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        field, sep, wanted = part.partition("=")
        if not sep:
            raise ResultsError(f"{part!r} is not field=value")
        pairs.append((field.strip(), wanted.strip()))
    return pairs


def matches(entry: Any, pairs: list[tuple[str, str]]) -> bool:
    """Whether `entry` has every field=value of `pairs` ("a|b": either value)."""
    return isinstance(entry, dict) and all(
        field in entry and any(same(entry[field], w) for w in wanted.split("|"))
        for field, wanted in pairs
    )


def lookup(obj: Any, path: str) -> Any:
    """The value at `path` in `obj` (module docstring: keys, indices, quoted keys, selections)."""
    for kind, text in _segments(path):
        if kind == "select":
            pairs = conditions(text)
            hits = [entry for entry in obj if matches(entry, pairs)]
            if len(hits) != 1:
                raise ResultsError(f"[{text}] selects {len(hits)} entries, not one")
            obj = hits[0]
        elif isinstance(obj, list):
            try:
                obj = obj[int(text)]
            except (ValueError, IndexError) as err:
                raise ResultsError(f"no list entry {text!r}") from err
        elif isinstance(obj, dict) and text in obj:
            obj = obj[text]
        else:
            raise ResultsError(f"no key {text!r} in the path {path!r}")
    return obj


def entries(obj: Any) -> list[dict]:
    """A list of dicts; a dict of equal-length lists (a path's columns) becomes one, and a dict
    of single values one entry {"key", "value"} per item."""
    if isinstance(obj, list):
        return obj
    if isinstance(obj, dict) and not any(isinstance(v, list | dict) for v in obj.values()):
        return [{"key": k, "value": v} for k, v in obj.items()]
    if isinstance(obj, dict):
        columns = {k: v for k, v in obj.items() if isinstance(v, list)}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) == 1:
            n = lengths.pop()
            return [{k: v[i] for k, v in columns.items()} for i in range(n)]
    raise ResultsError("not a list of entries, nor a dict of equal-length lists")


def fmt(value: Any, spec: str = "") -> str:
    """`value` in the format `spec` (Python's format mini-language, or "pm" for a [mean, std]
    pair as results_table.pm writes it); "-" for a missing value."""
    if value is None:
        return "-"
    if spec == "pm":
        return results_table.pm(tuple(value))
    if isinstance(value, list):
        return ", ".join(fmt(v, spec) for v in value)
    if not spec:
        return str(value)
    try:
        return format(value, spec)
    except (TypeError, ValueError) as err:
        raise ResultsError(f"cannot format {value!r} as {spec!r}") from err


def script_of(name: str) -> experiment.FigureSpec:
    """The figure script whose results JSON is `name` (<stem>_<dataset>_<preset>.json): the
    spec with the longest stem that starts the name."""
    found = [s for s in experiment.specs() if Path(name).name.startswith(s.stem + "_")]
    if not found:
        raise ResultsError(f"no figure script writes {name}")
    return max(found, key=lambda s: len(s.stem))


def hms(seconds: float) -> str:
    """1374.2 -> '1,374 s (23 min)'; 15504 -> '15,504 s (4.3 h)'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds:,.0f} s ({seconds / 60:.0f} min)"
    return f"{seconds:,.0f} s ({seconds / 3600:.1f} h)"


# -- docutils building blocks ------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]], *, classes=()) -> nodes.table:
    """A docutils table with a header row; every cell plain text."""
    tab = nodes.table(classes=["results-table", *classes])
    group = nodes.tgroup(cols=len(header))
    tab += group
    for _ in header:
        group += nodes.colspec(colwidth=1)

    def row(cells: list[str]) -> nodes.row:
        r = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            entry += nodes.paragraph(text=cell)
            r += entry
        return r

    head = nodes.thead()
    head += row(header)
    body = nodes.tbody()
    for cells in rows:
        body += row(cells)
    group += head
    group += body
    return tab


def markdown_table(text: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a pipe table as results_table.markdown writes it."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip("|").split("|")]

    return cells(lines[0]), [cells(line) for line in lines[2:]]


class ResultsDirective(SphinxDirective):
    """A directive reading committed results JSON: notes each file as a dependency of the page
    (so the page is rebuilt when a file changes) and turns a ResultsError into a build error."""

    def load(self, name: str) -> Any:
        self.env.note_dependency(str(json_path(name)))
        return load(name)

    def run(self) -> list[nodes.Node]:
        try:
            return self.build()
        except ResultsError as err:
            raise self.error(f"{self.name}: {err}") from err

    def build(self) -> list[nodes.Node]:
        raise NotImplementedError


class ResultsTable(ResultsDirective):
    """Tables 2-4 with the paper's columns beside ours (results_table.markdown)."""

    required_arguments = 1
    optional_arguments = 8
    option_spec = {"rows": directives.unchanged}

    def build(self) -> list[nodes.Node]:
        results = [self.load(name) for name in self.arguments]
        header, rows = markdown_table(results_table.markdown(results))
        words = [w.strip() for w in self.options.get("rows", "").split(",") if w.strip()]
        if words:
            rows = [r for r in rows if any(w in r[0] for w in words)]
        if not rows:
            raise ResultsError(f"no row contains any of {words}")
        return [table(header, rows)]


PAPER_TABLES = {"2": "Table 2", "3": "Table 3", "4": "Table 4"}


def paper_rows(which: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the paper's F1 numbers in Table `which` ("2", "3", "4" or "7")."""
    if which == "7":
        regimes = sorted({g for v in paper.PAPER_TABLE7_F1.values() for g in v}, key=len)
        rows = [
            [key, *(paper.plus_minus(values.get(g), 2) for g in regimes)]
            for key, values in paper.PAPER_TABLE7_F1.items()
        ]
        return ["quantity", *regimes], rows
    if which not in PAPER_TABLES:
        raise ResultsError(f"the paper's Table {which} is not in keskar_repro.report.paper")
    rows = []
    for key, values in paper.PAPER_F1.items():
        group = key.rsplit("/", 1)[0] if key.startswith("sharpness/") else key
        if paper.PAPER_TABLE_OF.get(group) == PAPER_TABLES[which]:
            rows.append([key, *(paper.plus_minus(values.get(g), 2) for g in ("SB", "LB"))])
    return ["quantity", "SB", "LB"], rows


class PaperTable(ResultsDirective):
    """The paper's F1 numbers of one table (keskar_repro.report.paper), mean +- std."""

    required_arguments = 1

    def build(self) -> list[nodes.Node]:
        header, rows = paper_rows(self.arguments[0])
        return [table(header, rows)]


class ResultsText(ResultsDirective):
    """What the figure script prints for this JSON (its FigureSpec.text)."""

    required_arguments = 1

    def build(self) -> list[nodes.Node]:
        name = self.arguments[0]
        text = script_of(name).text(self.load(name))
        return [nodes.literal_block(text, text, classes=["results-text"])]


class ResultsRows(ResultsDirective):
    """A table of a list's entries in the JSON: plain (content lines "header | path | format")
    or pivoted (:index:, :pivot:, :value:, :format:)."""

    required_arguments = 1
    has_content = True
    option_spec = {
        "list": directives.unchanged_required,
        "where": directives.unchanged,
        "index": directives.unchanged,
        "pivot": directives.unchanged,
        "value": directives.unchanged,
        "format": directives.unchanged,
    }

    def selected(self) -> list[dict]:
        found = entries(lookup(self.load(self.arguments[0]), self.options["list"]))
        pairs = conditions(self.options.get("where", ""))
        found = [e for e in found if matches(e, pairs)]
        if not found:
            raise ResultsError(f"no entry of {self.options['list']} matches {pairs}")
        return found

    def build(self) -> list[nodes.Node]:
        found = self.selected()
        if "index" in self.options:
            return [self.pivoted(found)]
        columns = [[c.strip() for c in line.split("|")] for line in self.content if line.strip()]
        if not columns or any(len(c) not in (2, 3) for c in columns):
            raise ResultsError("give one 'header | path | format' content line per column")
        header = [c[0] for c in columns]
        rows = [[fmt(lookup(e, c[1]), c[2] if len(c) == 3 else "") for c in columns] for e in found]
        return [table(header, rows)]

    def pivoted(self, found: list[dict]) -> nodes.table:
        def fields(option: str) -> list[str]:
            return [f.strip() for f in self.options.get(option, "").split(",") if f.strip()]

        def key(entry: dict, names: list[str]) -> tuple[str, ...]:
            return tuple(str(lookup(entry, n)) for n in names)

        index, pivots = fields("index"), fields("pivot")
        value, spec = self.options.get("value", "value"), self.options.get("format", "")
        keys = list(dict.fromkeys(key(e, index) for e in found))
        heads = list(dict.fromkeys(key(e, pivots) for e in found))
        cells: dict[tuple, Any] = {}
        for e in found:
            cell = (key(e, index), key(e, pivots))
            if cell in cells:
                raise ResultsError(f"two entries for {cell}: narrow :where:, or add a field")
            cells[cell] = lookup(e, value)
        header = [", ".join(index)] + [
            ", ".join(f"{p} {v}" for p, v in zip(pivots, h, strict=True)) or value for h in heads
        ]
        rows = [[", ".join(k), *(fmt(cells.get((k, h)), spec) for h in heads)] for k in keys]
        return table(header, rows)


def hardware(environment: dict) -> str:
    """The device and host a results JSON records."""
    device = environment.get("device", {})
    text = f"{device.get('count', '?')} JAX device(s) of kind {device.get('kind', '?')}"
    if device.get("processes", 1) != 1:
        text += f" in {device['processes']} processes"
    cpu = environment.get("host_cpu")
    if isinstance(cpu, dict) and cpu.get("model"):
        text += f"; {cpu['model']}"
        if environment.get("cpu_count"):
            text += f", {environment['cpu_count']} cores"
    return f"{text}; host {environment.get('platform', '?')}"


class ResultsProvenance(ResultsDirective):
    """How a results JSON was made: command, start, wall time, parts, device, host, versions."""

    required_arguments = 1

    def build(self) -> list[nodes.Node]:
        name = self.arguments[0]
        results = self.load(name)
        env = results.get("environment", {})
        items: list[tuple[str, nodes.Node]] = [
            ("results", nodes.literal(text=str(json_path(name).relative_to(REPO)))),
            ("command", nodes.literal(text=results.get("command", "-"))),
            ("started", nodes.Text(str(results.get("started") or "not recorded"))),
            ("wall time of that command", nodes.Text(hms(results["wall_seconds"]))),
        ]
        runs = [r for r in results.get("runs", []) if "train_seconds" in r]
        if runs:  # runs trained in one compiled program share its seconds: counted once
            total = sum({r["train_seconds"] for r in runs})
            items.append((f"training of its {len(runs)} runs", nodes.Text(f"{hms(total)}")))
        for part in results.get("parts", []):
            line = nodes.paragraph()
            line += nodes.literal(text=part["command"])
            line += nodes.Text(f", started {part.get('started')}, {hms(part['wall_seconds'])}")
            items.append((f"part {part['file']}", line))
        items.append(("hardware", nodes.Text(hardware(env))))
        versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
        items.append(("software", nodes.Text(f"Python {env.get('python', '?')}; {versions}")))
        out = nodes.field_list(classes=["results-provenance"])
        for label, body in items:
            field = nodes.field()
            field += nodes.field_name(text=label)
            content = nodes.field_body()
            if isinstance(body, nodes.paragraph):
                content += body
            else:
                para = nodes.paragraph()
                para += body
                content += para
            field += content
            out += field
        return [out]


class ResultRole(SphinxRole):
    """{result}`JSON:path:format`: one value of a results JSON."""

    def run(self):
        name, _, rest = self.text.partition(":")
        path, _, spec = rest.partition(":")
        try:
            self.env.note_dependency(str(json_path(name.strip())))
            text = fmt(lookup(load(name.strip()), path.strip()), spec.strip())
        except ResultsError as err:
            msg = self.inliner.reporter.error(f"result: {err}", line=self.lineno)
            return [self.inliner.problematic(self.rawtext, self.rawtext, msg)], [msg]
        return [nodes.Text(text)], []


class PaperRole(SphinxRole):
    """{paper}`KEY REGIME`: one of the paper's mean +- std (table7/KEY for Table 7)."""

    def run(self):
        key, _, regime = self.text.strip().rpartition(" ")
        numbers = paper.PAPER_F1
        if key.startswith("table7/"):
            key, numbers = key.removeprefix("table7/"), paper.PAPER_TABLE7_F1
        pair = numbers.get(key, {}).get(regime)
        if pair is None:
            msg = self.inliner.reporter.error(f"paper: no {key!r} {regime!r}", line=self.lineno)
            return [self.inliner.problematic(self.rawtext, self.rawtext, msg)], [msg]
        return [nodes.Text(paper.plus_minus(pair, 2))], []


def setup(app):
    app.add_directive("results-table", ResultsTable)
    app.add_directive("paper-table", PaperTable)
    app.add_directive("results-text", ResultsText)
    app.add_directive("results-rows", ResultsRows)
    app.add_directive("results-provenance", ResultsProvenance)
    app.add_role("result", ResultRole())
    app.add_role("paper", PaperRole())
    return {"parallel_read_safe": True, "parallel_write_safe": True}
