"""The parameter counts printed in README.md and docs/xingganpp.md match the networks the configs build.

Every row of the config table (generator, shape and appearance discriminator) and of the ablation
table (generator, Market / DeepFashion) is parsed from the Markdown and checked against a model
built from the named config and overlay on the meta device (sizes only, no memory).
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from xinggan.config import load_config
from xinggan.models import build_discriminators, build_generator, count_parameters

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# Which base config an ablation row's "applies to" column names. The "both" rows are measured on
# XingGAN++ (docs/xingganpp.md says so above its copy of the table).
BASES = {"XingGAN++": "{dataset}_xingganpp.yaml", "both": "{dataset}_xingganpp.yaml",
         "XingGAN": "{dataset}.yaml"}


def table_rows(path: Path, header_start: str) -> list:
    """The cells of every body row of the first Markdown table whose header starts with ``header_start``."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header_start):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([cell.strip() for cell in row.strip().strip("|").split("|")])
            return rows
    raise AssertionError(f"{path.name}: no table whose header starts with {header_start!r}")


def count(text: str) -> int:
    return int(text.replace(",", ""))


def config_name(cell: str) -> str:
    match = re.fullmatch(r"`(?:configs/(?:ablations/)?)?([\w.]+\.yaml)`", cell)
    assert match, f"cannot read a config file name from {cell!r}"
    return match.group(1)


@lru_cache(maxsize=None)
def sizes(*paths: Path) -> tuple:
    cfg = load_config(list(paths))
    with torch.device("meta"):  # sizes only
        generator = build_generator(cfg)
        shape_d, appearance_d = build_discriminators(cfg)
    return count_parameters(generator), count_parameters(shape_d), count_parameters(appearance_d)


def test_readme_config_table():
    rows = table_rows(REPO / "README.md", "| config | G params |")
    assert len(rows) == 4
    for row in rows:
        expected = tuple(count(cell) for cell in row[1:4])
        assert sizes(CONFIGS / config_name(row[0])) == expected, row[0]


@pytest.mark.parametrize("document", ["README.md", "docs/xingganpp.md"])
def test_ablation_table(document):
    rows = table_rows(REPO / document, "| overlay | what it changes |")
    overlays = {row[0] for row in rows}
    # Every overlay shipped in configs/ablations/ has its row, and the full config too.
    assert overlays == {"(none)"} | {f"`{p.name}`" for p in (CONFIGS / "ablations").glob("*.yaml")}
    for row in rows:
        overlay, applies_to, params = row[0], row[2], row[3]
        market, deepfashion = (count(value) for value in params.split("/"))
        for dataset, expected in (("market", market), ("deepfashion", deepfashion)):
            paths = [CONFIGS / BASES[applies_to].format(dataset=dataset)]
            if overlay != "(none)":
                paths.append(CONFIGS / "ablations" / config_name(overlay))
            assert sizes(*paths)[0] == expected, (document, overlay, dataset)
