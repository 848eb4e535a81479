"""Tables for terminals and pipes: one way every listing command prints rows.

``table`` fits the terminal: identifier columns whose value is the same in every row (one
metric, say) move to a line above the table, long identifiers are replaced by short codes
explained in a legend below it (never cut with an ellipsis), and only then are the least
important columns left out, with a line naming them. ``csv``, ``json`` and ``markdown`` print every column in full, for pipes and documents.
A missing value prints as ``-`` in the table, CSV and markdown (``null`` in JSON).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.table import Table

__all__ = ["Column", "FORMATS", "render", "cell_text", "interval_text", "MISSING",
           "ceiling_cells"]

FORMATS = ("table", "csv", "json", "markdown")
MISSING = "-"
PROSE_WIDTH = 24
ABBREVIATE_ABOVE = 12  # identifiers up to this many characters are never abbreviated


@dataclass(frozen=True)
class Column:
    """One column: its key in the rows, its header, and how it may shrink.

    Parameters
    ----------
    key : the row key.
    header : the header shown (default: the key).
    identifier : a name (model, layer, target...): never cut; abbreviated to a code with a legend
        when the table does not fit, or wrapped.
    priority : columns with a higher number are left out first when nothing else makes the
        table fit (0: never left out).
    digits : decimals of a float value.
    prose : free text (a description): wraps to share the width, counted at ``PROSE_WIDTH``.
    """

    key: str
    header: str = ""
    identifier: bool = False
    priority: int = 0
    digits: int = 3
    prose: bool = False

    @property
    def title(self) -> str:
        return self.header or self.key


def cell_text(value: object, digits: int = 3) -> str:
    """A cell as text: ``-`` for a missing value (None, NaN), floats with ``digits`` decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def interval_text(low: object, high: object, digits: int = 3) -> str:
    """``low–high`` (an en dash, so a negative end stays readable), or ``-`` when either end is
    missing."""
    lo, hi = cell_text(low, digits), cell_text(high, digits)
    return MISSING if MISSING in (lo, hi) else f"{lo}\u2013{hi}"


def ceiling_cells(rows: list[dict], describe) -> list[str]:
    """Fill each score row's ``ceiling`` cell and return the notes that explain them.

    A computed ceiling shows its bounds; a missing one ``-`` like every missing value; a
    published one its bounds marked ``*``. ``describe(row, bounds)`` (``reports.ceiling_text``)
    says what each is ("no ceiling (one RDM)", "... (published ...)"); those texts go into one
    note per target below the table instead of widening the column.
    """
    notes: dict[str, str] = {}
    for r in rows:
        bounds = interval_text(r.get("ceiling_low"), r.get("ceiling_high"))
        text = describe(r, bounds)
        if text == bounds:
            r["ceiling"] = bounds
        elif bounds == MISSING:
            r["ceiling"] = MISSING
            notes.setdefault(f"ceiling - for {r['target']}", text)
        else:
            r["ceiling"] = f"{bounds}*"
            notes.setdefault(f"ceiling * for {r['target']}", text.replace(bounds, "").strip())
    return [f"{k}: {v}" for k, v in notes.items()]


def _json_value(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value if isinstance(value, (int, float, str, bool)) else str(value)


@dataclass
class _Layout:
    columns: list[Column]
    constant: dict[str, str] = field(default_factory=dict)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)  # column -> value -> code
    dropped: list[str] = field(default_factory=list)


def _width(columns: list[Column], texts: dict[str, list[str]], codes: dict) -> int:
    """Characters a SIMPLE-box table of these columns needs (one space either side of a cell)."""
    total = 2 * len(columns) - 2 + max(len(columns) - 1, 0)  # padding inside, rule between
    for c in columns:
        cells = [codes.get(c.key, {}).get(t, t) for t in texts[c.key]]
        need = max([len(c.title), *map(len, cells)])
        total += min(need, PROSE_WIDTH) if c.prose else need
    return total


def _layout(columns: Sequence[Column], texts: dict[str, list[str]], width: int) -> _Layout:
    cols = list(columns)
    layout = _Layout(cols)
    if len(next(iter(texts.values()), [])) > 1:  # a name shared by every row: said once, above
        for c in list(cols):
            if c.identifier and len(set(texts[c.key])) == 1 and len(cols) > 1:
                layout.constant[c.title] = texts[c.key][0]
                cols.remove(c)
    for c in sorted((c for c in cols if c.identifier),
                    key=lambda c: -max(map(len, texts[c.key]), default=0)):
        if _width(cols, texts, layout.codes) <= width:
            break
        values = list(dict.fromkeys(texts[c.key]))
        if len(values) > len(texts[c.key]) / 2 or max(map(len, values)) <= ABBREVIATE_ABOVE:
            continue  # short names, or few repeats: a legend would not save room
        prefix = c.title[0].upper()
        codes = {v: f"{prefix}{i + 1}" for i, v in enumerate(values)}
        if max(map(len, values)) > len(f"{prefix}{len(values)}") + 1:
            layout.codes[c.key] = codes
    while _width(cols, texts, layout.codes) > width:
        optional = [c for c in cols if c.priority]
        if not optional:
            break  # identifiers wrap (fold), never an ellipsis
        drop = max(optional, key=lambda c: c.priority)
        cols.remove(drop)
        layout.dropped.append(drop.title)
    layout.columns = cols
    return layout


def render(console: Console, columns: Sequence[Column], rows: Sequence[dict], fmt: str = "table",
           title: str | None = None, notes: Sequence[str] = ()) -> None:
    """Print ``rows`` (dicts keyed by ``Column.key``) as a fitted table or in full as CSV, JSON
    or markdown (see the module docstring); ``notes`` are printed under a table."""
    if fmt == "json":
        data = [{c.key: _json_value(r.get(c.key)) for c in columns} for r in rows]
        console.file.write(json.dumps(data, indent=1) + "\n")
        return
    texts = {c.key: [cell_text(r.get(c.key), c.digits) for r in rows] for c in columns}
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([c.key for c in columns])
        for i in range(len(rows)):
            writer.writerow([texts[c.key][i] for c in columns])
        console.file.write(buf.getvalue())
        return
    if fmt == "markdown":
        def esc(s: str) -> str:
            return s.replace("|", "\\|")
        lines = ["| " + " | ".join(esc(c.title) for c in columns) + " |",
                 "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(esc(texts[c.key][i]) for c in columns) + " |"
                  for i in range(len(rows))]
        console.file.write("\n".join(lines) + "\n")
        return
    layout = _layout(columns, texts, console.width)
    if title:
        console.print(title, style="bold", markup=False, highlight=False)
    for name, value in layout.constant.items():
        console.print(f"{name}: {value}", markup=False, highlight=False)
    # prose shares what the other columns leave (at least PROSE_WIDTH each)
    rest = [c for c in layout.columns if not c.prose]
    n_prose = len(layout.columns) - len(rest)
    spare = console.width - _width(rest, texts, layout.codes) - 3 * n_prose
    prose_width = max(10, spare // n_prose) if n_prose else None
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), show_edge=False)
    for c in layout.columns:
        numeric = not c.identifier and all(t == MISSING or _is_number(t) for t in texts[c.key])
        cells = [layout.codes.get(c.key, {}).get(t, t) for t in texts[c.key]]
        longest = max([len(c.title), *map(len, cells)])
        table.add_column(c.title, overflow="fold", justify="right" if numeric else "left",
                         no_wrap=False, width=prose_width if c.prose else None,
                         min_width=min(longest, console.width // 2) if c.identifier else None)
    for i in range(len(rows)):
        table.add_row(*(layout.codes.get(c.key, {}).get(texts[c.key][i], texts[c.key][i])
                        for c in layout.columns))
    console.print(table, markup=False, highlight=False)
    for key, codes in layout.codes.items():
        title_of = next(c.title for c in columns if c.key == key)
        console.print(f"{title_of}s:", markup=False, highlight=False)
        for value, code in codes.items():
            console.print(f"  {code:4s} {value}", markup=False, highlight=False)
    for note in notes:
        console.print(note, markup=False, highlight=False)
    if layout.dropped:
        console.print(f"not shown at {console.width} columns: {', '.join(layout.dropped)} "
                      "(widen the terminal, or --format csv | json | markdown for every column)",
                      markup=False, highlight=False)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
