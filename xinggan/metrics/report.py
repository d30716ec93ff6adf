"""Reports of an evaluation: ``metrics.json`` (the results as they are), the ``metrics.md`` table below
the papers' numbers, and the note on metrics that could not run."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Union

from ..metric_registry import METRICS, PAPER_RESULTS, TABLE_ORDER, get_protocol

__all__ = ["format_table", "write_metrics", "report_missing_metrics"]


def _fmt(value: float) -> str:
    """4 decimals below 100, 2 from 100 on (nan and inf as such)."""
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.2f}"


def format_table(results: dict) -> str:
    """Markdown table: the papers' reported numbers and ours, the protocol's name beside every number."""
    name = results["protocol"]
    protocol = get_protocol(name)
    dataset = results.get("details", {}).get("dataset")
    paper = [(method, values) for method, paper_dataset, values in PAPER_RESULTS.get(name, [])
             if dataset in (None, paper_dataset)]
    shown = set(protocol.default_metrics) | {m for m in METRICS if m in results}
    columns = [m for m in TABLE_ORDER if m in shown]
    lines = ["| method | " + " | ".join(METRICS[m].label for m in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for method, values in paper:
        cells = [f"{values[m]:g} ({name})" if m in values else "–" for m in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    cells = [f"{_fmt(results[m])} ({name})" if m in results else "skipped" if m in results.get("skipped", {})
             else "–" for m in columns]
    lines.append("| ours | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_metrics(results: dict, out_json: Union[str, Path], out_md: Union[str, Path, None] = None) -> None:
    """Write ``metrics.json`` and, when ``out_md`` is given, the ``metrics.md`` report."""
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    if out_md is None:
        return
    protocol = get_protocol(results["protocol"])
    dataset = results.get("details", {}).get("dataset", "unknown")
    text = [f"# Evaluation: protocol `{protocol.name}` ({dataset})", "",
            f"{protocol.description}.", "",
            f"{results['num_pairs']} pairs; JPEG round trip {'on' if results.get('jpeg_roundtrip') else 'off'}."
            + (f" SSIM: {settings}." if (settings := results.get("details", {}).get("ssim_settings")) else ""),
            "", format_table(results), "",
            "Rows marked (paper) are the values reported in the papers' tables (listed in "
            "docs/data_and_metrics.md), not recomputed here; the name in parentheses is the protocol each "
            "number belongs to."]
    if results.get("skipped"):
        text += ["", "Skipped metrics:"]
        text += [f"- {METRICS[m].label if m in METRICS else m}: {reason}" for m, reason in results["skipped"].items()]
    Path(out_md).parent.mkdir(parents=True, exist_ok=True)
    Path(out_md).write_text("\n".join(text) + "\n", encoding="utf-8")


def report_missing_metrics(results: dict, allow_missing: bool, metrics_json, how_to_allow: str) -> bool:
    """Print each metric of the protocol that could not run (a note when ``allow_missing``, else an
    error naming what to provide and ``how_to_allow``); True when that makes the run a failure."""
    missing = results["skipped"]
    for metric, reason in missing.items():
        print(f"{'skipped' if allow_missing else 'error: cannot compute'} {metric}: {reason}",
              file=sys.stdout if allow_missing else sys.stderr)
    if missing and not allow_missing:
        print(f"error: {len(missing)} metric(s) of protocol {results.get('protocol', '')} could not run "
              f"({', '.join(missing)}); the others are in {metrics_json}. Provide the files named "
              f"above, or {how_to_allow} to record them as skipped.", file=sys.stderr)
        return True
    return False
