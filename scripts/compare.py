#!/usr/bin/env python
r"""One table of many evaluation runs, in the layout of XingGAN's Table 1 (Markdown, CSV, LaTeX).

    python scripts/compare.py results/market results/deepfashion patn_market.json --out table.md
    python scripts/compare.py ours=results/market ours=results/deepfashion PATN=patn_market.json \
        --out table.md --out table.csv --out table.tex

Each argument is a run folder (its metrics.json is used) or a metrics.json written by test.py or
scripts/evaluate.py, optionally prefixed with ``LABEL=``; runs with the same label share a row (a
Market run and a DeepFashion run of one method). Runs of the PATN presets go in Table 1's
columns (Market: SSIM, IS, mask-SSIM, mask-IS, PCKh; DeepFashion: SSIM, IS, PCKh) below the
numbers the papers reported, which are labelled as such; runs of other presets (gfla...) get a
table of their own. The preset (protocol) of every table is named above it.

The best value of each column is in bold (Markdown, LaTeX) or named in the CSV's ``best`` column;
the tables are written by :mod:`xinggan.tables`, as the ablation tables of ``scripts/sweep.py``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xinggan.metric_registry import PAPER_RESULTS, PROTOCOLS, TABLE_ORDER
from xinggan.tables import Row, Table, metric_column, render, table_format, write_tables

TABLE1_PRESETS = {"patn-market": "market", "patn-deepfashion": "deepfashion"}
# Table 1's columns: each preset's default metrics in table order (Market, then DeepFashion).
TABLE1 = {dataset: [m for m in TABLE_ORDER if m in PROTOCOLS[preset].default_metrics]
          for preset, dataset in TABLE1_PRESETS.items()}
DATASET_NAMES = {"market": "Market-1501", "deepfashion": "DeepFashion"}


class CompareError(ValueError):
    """An argument that is not a run folder or a metrics.json."""


def load_run(argument: str) -> tuple[str, Path, dict]:
    # LABEL=PATH, unless the whole argument is an existing path (a folder may contain '=')
    if Path(argument).exists() or "=" not in argument:
        label, path_text = "", argument
    else:
        label, _, path_text = argument.partition("=")
    path = Path(path_text)
    if path.is_dir():
        path = path / "metrics.json"
    if not path.is_file():
        raise CompareError(f"{argument}: no such run folder or metrics.json ({path} does not exist)")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CompareError(f"{path}: not a readable metrics.json ({error})") from None
    if not isinstance(results, dict) or "protocol" not in results:
        raise CompareError(f"{path}: not a metrics.json of test.py / scripts/evaluate.py (no 'protocol')")
    if not label:
        label = path.parent.name if path.name == "metrics.json" else path.stem
    return label, path, results


def table1(runs: list) -> Table:
    columns = [metric_column(metric, f"{dataset}/{metric}", f"{DATASET_NAMES[dataset]} ")
               for dataset, metrics in TABLE1.items() for metric in metrics]
    table = Table("XingGAN Table 1 (presets patn-market and patn-deepfashion)", ["method"], columns)
    paper: dict[str, dict] = {}
    for preset, dataset in TABLE1_PRESETS.items():
        for method, paper_dataset, values in PAPER_RESULTS.get(preset, []):
            paper.setdefault(method, {}).update({f"{paper_dataset}/{m}": v for m, v in values.items()})
    for method, values in paper.items():
        table.rows.append(Row([method.replace("(paper)", "(paper, reported)")], values, reported=True))
    rows: dict[str, dict] = {}
    for label, path, results in runs:
        dataset = TABLE1_PRESETS[results["protocol"]]
        row = rows.setdefault(label, {})
        for metric in TABLE1[dataset]:
            if metric in results:
                row[f"{dataset}/{metric}"] = results[metric]
            elif metric in results.get("skipped", {}):
                row[f"{dataset}/{metric}"] = "not run"
        table.notes.append(f"- {label}, {DATASET_NAMES[dataset]}: `{path}` ({results['protocol']}, "
                           f"{results.get('num_pairs', '?')} pairs"
                           + (f", layout {results['layout']}" if results.get("layout") else "") + ")")
    table.rows += [Row([label], cells) for label, cells in rows.items()]
    return table


def other_table(preset: str, runs: list) -> Table:
    shown = [m for m in TABLE_ORDER if any(m in r for _, _, r in runs)
             or any(m in values for _, _, values in PAPER_RESULTS.get(preset, []))]
    table = Table(f"Preset {preset}", ["method", "dataset"],
                  [metric_column(m) for m in shown],
                  description=PROTOCOLS[preset].description if preset in PROTOCOLS else "")
    for method, dataset, values in PAPER_RESULTS.get(preset, []):
        table.rows.append(Row([method.replace("(paper)", "(paper, reported)"), dataset], values, reported=True))
    for label, path, results in runs:
        dataset = results.get("details", {}).get("dataset", "?")
        cells = {m: results[m] if m in results else "not run" if m in results.get("skipped", {}) else None
                 for m in shown}
        table.rows.append(Row([label, dataset], cells))
    return table


PREAMBLE = ["Rows marked (paper, reported) are the numbers printed in the papers, not recomputed here; "
            "the other rows are our runs, scored under the preset named above each table. "
            "'not run': the metric could not be computed for that run (see its metrics.md)."]


def build_tables(arguments: list[str]) -> list[Table]:
    runs = [load_run(a) for a in arguments]
    tables = []
    patn = [r for r in runs if r[2]["protocol"] in TABLE1_PRESETS]
    if patn:
        tables.append(table1(patn))
    for preset in sorted({r[2]["protocol"] for r in runs} - set(TABLE1_PRESETS)):
        tables.append(other_table(preset, [r for r in runs if r[2]["protocol"] == preset]))
    return tables


def compare(arguments: list[str], fmt: str = "markdown") -> str:
    """The tables of the runs in ``fmt`` (markdown, csv or latex)."""
    return render(build_tables(arguments), fmt, heading="Evaluation runs", preamble=PREAMBLE)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_OR_JSON", help="[LABEL=]run folder or metrics.json")
    parser.add_argument("--out", action="append", default=[],
                        help="file to write, in the format its name ends with: .md (Markdown), .csv or "
                             ".tex (LaTeX, booktabs); repeat for several (default: print Markdown only)")
    args = parser.parse_args(argv)
    try:
        for path in args.out:
            table_format(path)
        tables = build_tables(args.runs)
    except (CompareError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(render(tables, "markdown", heading="Evaluation runs", preamble=PREAMBLE))
    for path in write_tables(tables, args.out, heading="Evaluation runs", preamble=PREAMBLE):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
