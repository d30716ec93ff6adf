#!/usr/bin/env python
r"""One Markdown table of many evaluation runs, in the layout of XingGAN's Table 1.

    python scripts/compare.py results/market results/deepfashion patn_market.json --out table.md
    python scripts/compare.py ours=results/market ours=results/deepfashion PATN=patn_market.json --out table.md

Each argument is a run folder (its metrics.json is used) or a metrics.json written by test.py or
scripts/evaluate.py, optionally prefixed with ``LABEL=``; runs with the same label share a row (a
Market run and a DeepFashion run of one method). Runs of the PATN presets go in Table 1's
columns (Market: SSIM, IS, mask-SSIM, mask-IS, PCKh; DeepFashion: SSIM, IS, PCKh) below the
numbers the papers reported, which are labelled as such; runs of other presets (gfla...) get a
table of their own. The preset (protocol) of every table is named above it.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xinggan.metrics.evaluate import METRIC_LABELS  # noqa: E402
from xinggan.metrics.protocols import PAPER_RESULTS, PROTOCOLS, TABLE_ORDER  # noqa: E402

TABLE1 = (("market", ("ssim", "is", "mask_ssim", "mask_is", "pckh")), ("deepfashion", ("ssim", "is", "pckh")))
TABLE1_PRESETS = {"patn-market": "market", "patn-deepfashion": "deepfashion"}
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


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def table1(runs: list) -> list[str]:
    columns = [(dataset, metric) for dataset, metrics in TABLE1 for metric in metrics]
    lines = ["## XingGAN Table 1 (presets patn-market and patn-deepfashion)", "",
             "| method | " + " | ".join(f"{DATASET_NAMES[d]} {METRIC_LABELS[m]}" for d, m in columns) + " |",
             "|---|" + "---|" * len(columns)]
    paper: dict[str, dict] = {}
    for preset, dataset in TABLE1_PRESETS.items():
        for method, paper_dataset, values in PAPER_RESULTS.get(preset, []):
            paper.setdefault(method, {}).update({(paper_dataset, m): v for m, v in values.items()})
    for method, values in paper.items():
        cells = [f"{values[c]:g}" if c in values else "–" for c in columns]
        lines.append(f"| {method.replace('(paper)', '(paper, reported)')} | " + " | ".join(cells) + " |")
    rows: dict[str, dict] = {}
    notes = []
    for label, path, results in runs:
        dataset = TABLE1_PRESETS[results["protocol"]]
        row = rows.setdefault(label, {})
        for metric in dict(TABLE1)[dataset]:
            if metric in results:
                row[(dataset, metric)] = _cell(results[metric])
            elif metric in results.get("skipped", {}):
                row[(dataset, metric)] = "not run"
        notes.append(f"- {label}, {DATASET_NAMES[dataset]}: `{path}` ({results['protocol']}, "
                     f"{results.get('num_pairs', '?')} pairs"
                     + (f", layout {results['layout']}" if results.get("layout") else "") + ")")
    for label, row in rows.items():
        lines.append(f"| {label} | " + " | ".join(row.get(c, "–") for c in columns) + " |")
    return lines + [""] + notes


def other_table(preset: str, runs: list) -> list[str]:
    shown = [m for m in TABLE_ORDER if any(m in r for _, _, r in runs)
             or any(m in values for _, _, values in PAPER_RESULTS.get(preset, []))]
    lines = [f"## Preset {preset}", "", PROTOCOLS[preset].description if preset in PROTOCOLS else "", "",
             "| method | dataset | " + " | ".join(METRIC_LABELS[m] for m in shown) + " |",
             "|---|---|" + "---|" * len(shown)]
    for method, dataset, values in PAPER_RESULTS.get(preset, []):
        cells = [f"{values[m]:g}" if m in values else "–" for m in shown]
        lines.append(f"| {method.replace('(paper)', '(paper, reported)')} | {dataset} | " + " | ".join(cells) + " |")
    for label, path, results in runs:
        dataset = results.get("details", {}).get("dataset", "?")
        cells = [_cell(results[m]) if m in results else "not run" if m in results.get("skipped", {}) else "–"
                 for m in shown]
        lines.append(f"| {label} | {dataset} | " + " | ".join(cells) + " |")
    return lines


def compare(arguments: list[str]) -> str:
    runs = [load_run(a) for a in arguments]
    text = ["# Evaluation runs", "",
            "Rows marked (paper, reported) are the numbers printed in the papers, not recomputed here; "
            "the other rows are our runs, scored under the preset named above each table. "
            "'not run': the metric could not be computed for that run (see its metrics.md).", ""]
    patn = [r for r in runs if r[2]["protocol"] in TABLE1_PRESETS]
    if patn:
        text += table1(patn) + [""]
    for preset in sorted({r[2]["protocol"] for r in runs} - set(TABLE1_PRESETS)):
        text += other_table(preset, [r for r in runs if r[2]["protocol"] == preset]) + [""]
    return "\n".join(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_OR_JSON", help="[LABEL=]run folder or metrics.json")
    parser.add_argument("--out", help="Markdown file to write (default: print only)")
    args = parser.parse_args(argv)
    try:
        text = compare(args.runs)
    except CompareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
