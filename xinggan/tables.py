"""Result tables in Markdown, CSV and LaTeX (booktabs), with the best value of each column marked.

The one writer of ``scripts/compare.py`` and the sweep's ablation table. Best: per metric column, the
best value as printed (ties all marked; nothing with one row), bold in Markdown and LaTeX, named in the
CSV's last column ``best``.
"""
from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from xinggan.metric_registry import METRICS

__all__ = ["metric_column", "Column", "Row", "Table", "best_rows", "format_value", "render", "table_format",
           "write_tables", "write_text_atomic"]

TABLE_FORMATS = {".md": "markdown", ".markdown": "markdown", ".csv": "csv", ".tex": "latex"}
_ARROWS = {"higher": "↑", "lower": "↓"}
_LATEX_ARROWS = {"higher": r"$\uparrow$", "lower": r"$\downarrow$"}
MISSING = "–"


def format_value(value) -> str:
    """A measured number as the tables print it: 3 decimals, 1 decimal from 100 on."""
    if value is None:
        return MISSING
    if isinstance(value, str):
        return value
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


@dataclass(frozen=True)
class Column:
    """A metric column: ``key`` of the cell in each row, printed ``label``, ``better``: higher, lower or None."""

    key: str
    label: str
    better: Optional[str] = None


def metric_column(metric: str, key: str = "", prefix: str = "") -> Column:
    """The column of a registry metric: its label (after ``prefix``) and direction; ``key`` defaults to its name."""
    entry = METRICS[metric]
    return Column(key or metric, prefix + entry.label, entry.better)


@dataclass
class Row:
    """``lead``: leading texts; ``cells``: key -> number, note or None; ``reported`` rows print ``:g`` (a paper's)."""

    lead: list
    cells: dict
    reported: bool = False

    def text(self, key: str) -> str:
        value = self.cells.get(key)
        if self.reported and isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"{value:g}"
        return format_value(value)


@dataclass
class Table:
    title: str
    lead: list            # names of the leading text columns, e.g. ["method"]
    columns: list         # Column
    rows: list = field(default_factory=list)
    description: str = ""  # a sentence under the title (Markdown) / in the caption (LaTeX)
    notes: list = field(default_factory=list)  # Markdown lines after the table


def best_rows(table: Table) -> dict:
    """Column key -> indices of the rows holding that column's best printed value."""
    out: dict = {}
    if len(table.rows) < 2:
        return out
    for column in table.columns:
        if column.better not in ("higher", "lower"):
            continue
        printed = {}
        for i, row in enumerate(table.rows):
            value = row.cells.get(column.key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            try:
                shown = float(row.text(column.key))
            except ValueError:
                continue
            if not math.isnan(shown):
                printed[i] = shown
        if not printed:
            continue
        target = max(printed.values()) if column.better == "higher" else min(printed.values())
        out[column.key] = {i for i, v in printed.items() if v == target}
    return out


def _header_label(column: Column, arrows: dict) -> str:
    arrow = arrows.get(column.better or "")
    return f"{column.label} {arrow}" if arrow else column.label


def render_markdown(tables: Sequence[Table], heading: str = "", preamble: Sequence[str] = (),
                    level: int = 2) -> str:
    """Every table as a Markdown section (title, description, table, notes)."""
    lines: list = []
    if heading:
        lines += [f"# {heading}", ""]
    lines += list(preamble)
    if preamble:
        lines.append("")
    for table in tables:
        best = best_rows(table)
        lines += [f"{'#' * level} {table.title}", ""]
        if table.description:
            lines += [table.description, ""]
        header = list(table.lead) + [_header_label(c, _ARROWS) for c in table.columns]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for i, row in enumerate(table.rows):
            cells = [str(x) for x in row.lead]
            for column in table.columns:
                text = row.text(column.key)
                cells.append(f"**{text}**" if i in best.get(column.key, ()) else text)
            lines.append("| " + " | ".join(cells) + " |")
        if any(c.better for c in table.columns) and len(table.rows) > 1:
            lines += ["", "↑ higher is better, ↓ lower is better; the best value of each column "
                          "(as printed) in bold."]
        if table.notes:
            lines += [""] + list(table.notes)
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _csv_number(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return repr(float(value)) if isinstance(value, float) else str(value)


def render_csv(tables: Sequence[Table]) -> str:
    """One CSV: ``table`` (when several), the leading columns, every metric at full precision, ``best``."""
    several = len(tables) > 1
    lead: list = []
    metric_labels: list = []
    for table in tables:
        lead += [name for name in table.lead if name not in lead]
        metric_labels += [c.label for c in table.columns if c.label not in metric_labels]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow((["table"] if several else []) + lead + metric_labels + ["best"])
    for table in tables:
        best = best_rows(table)
        by_label = {c.label: c for c in table.columns}
        for i, row in enumerate(table.rows):
            leads = dict(zip(table.lead, row.lead))
            out = ([table.title] if several else []) + [str(leads.get(name, "")) for name in lead]
            for label in metric_labels:
                column = by_label.get(label)
                out.append(_csv_number(row.cells.get(column.key)) if column else "")
            out.append(";".join(c.label for c in table.columns if i in best.get(c.key, ())))
            writer.writerow(out)
    return buffer.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "–": "--", "↑": r"$\uparrow$", "↓": r"$\downarrow$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def render_latex(tables: Sequence[Table]) -> str:
    """Each table as a captioned ``table`` float with a booktabs ``tabular``."""
    out = ["% Written by xinggan.tables; needs \\usepackage{booktabs}.", ""]
    for table in tables:
        best = best_rows(table)
        spec = "l" * len(table.lead) + "c" * len(table.columns)
        header = [latex_escape(x) for x in table.lead]
        header += [latex_escape(c.label) + (f" {_LATEX_ARROWS[c.better]}" if c.better in _LATEX_ARROWS else "")
                   for c in table.columns]
        caption = latex_escape(table.title)
        if table.description:
            caption += ". " + latex_escape(table.description)
        if any(c.better for c in table.columns) and len(table.rows) > 1:
            caption += r". Best values in bold."
        out += [r"\begin{table}[t]", r"\centering", f"\\caption{{{caption}}}",
                f"\\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
        for i, row in enumerate(table.rows):
            cells = [latex_escape(x) for x in row.lead]
            for column in table.columns:
                text = latex_escape(row.text(column.key))
                cells.append(f"\\textbf{{{text}}}" if i in best.get(column.key, ()) else text)
            out.append(" & ".join(cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def render(tables: Sequence[Table], fmt: str, heading: str = "", preamble: Sequence[str] = ()) -> str:
    """The tables in ``fmt``: markdown, csv or latex."""
    if fmt == "markdown":
        return render_markdown(tables, heading, preamble)
    return {"csv": render_csv, "latex": render_latex}[fmt](tables)


def table_format(path: Union[str, Path]) -> str:
    """The format a file name asks for, from its suffix (.md, .csv, .tex)."""
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise ValueError(f"{path}: the file name must end in .md, .csv or .tex (the table format)")
    return TABLE_FORMATS[suffix]


def write_text_atomic(path: Union[str, Path], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_tables(tables: Sequence[Table], paths: Sequence[Union[str, Path]], heading: str = "",
                 preamble: Sequence[str] = ()) -> list:
    """Write the tables to each path in the format its suffix names; returns the paths."""
    formats = [table_format(p) for p in paths]  # every name checked before anything is written
    return [write_text_atomic(p, render(tables, f, heading, preamble)) for p, f in zip(paths, formats)]
