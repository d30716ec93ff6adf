"""Every parameter count in the documentation is recomputed from the networks the configs build.

Each table has one home, and this test reads it there:

- docs/architecture.md, "Parameter counts and cost": generator, shape and appearance
  discriminator of the released configs;
- docs/xingganpp.md, the overlay table: as ``scripts/doc_tables.py`` generates it from the
  configs, and the sentence that the XingGAN++ configs keep XingGAN's discriminators;
- docs/xingganpp.md, the Enhanced Attention cost table: the parameters of one EA module.

Models are built on the meta device (sizes only, no memory). The test also fails when a
parameter table appears again outside its home (README.md, docs/networks.md), or when one of
the released counts is written out in another Markdown page of the project.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from xinggan.config import load_config
from xinggan.models import build_discriminators, build_generator, count_parameters
from xinggan.models.enhanced_attention import EnhancedAttention

from helpers import load_script

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
doc_tables = load_script("doc_tables")
ARCHITECTURE = REPO / "docs" / "architecture.md"
XINGGANPP = REPO / "docs" / "xingganpp.md"

CONFIG_TABLE = "| config | G params |"
EA_TABLE = "| grid | scale | Nq = Nk |"


def tables(path: Path) -> list:
    """(header cells, body rows as lists of cells) of every Markdown table in ``path``."""
    lines = path.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[i + 1]):
            header = cells(lines[i])
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(cells(lines[i]))
                i += 1
            found.append((header, rows))
        else:
            i += 1
    return found


def cells(line: str) -> list:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table_rows(path: Path, header_start: str) -> list:
    """The body rows of the one table of ``path`` whose header line starts with ``header_start``."""
    matches = [rows for header, rows in tables(path) if ("| " + " | ".join(header) + " |").startswith(header_start)]
    assert len(matches) == 1, f"{path.name}: {len(matches)} tables whose header starts with {header_start!r}"
    return matches[0]


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


def released_counts() -> dict:
    """{config file name: (generator, shape D, appearance D)} as docs/architecture.md states them."""
    return {config_name(row[0]): tuple(count(cell) for cell in row[1:4])
            for row in table_rows(ARCHITECTURE, CONFIG_TABLE)}


def test_architecture_parameter_table():
    documented = released_counts()
    assert set(documented) == {"market.yaml", "deepfashion.yaml"}
    for name, expected in documented.items():
        assert sizes(CONFIGS / name) == expected, name


def test_xingganpp_overlay_table_is_current():
    text = XINGGANPP.read_text()
    assert doc_tables.updated(text) == text, (
        "docs/xingganpp.md: the overlay table is out of date; run python scripts/doc_tables.py")
    rows = table_rows(XINGGANPP, doc_tables.HEADER.splitlines()[0])
    assert len(rows) == 1 + len(list((CONFIGS / "ablations").glob("*.yaml")))


def test_xingganpp_keeps_the_released_discriminators():
    # docs/xingganpp.md sends the reader to architecture.md for the XingGAN++ discriminators.
    assert "keep XingGAN's discriminators unchanged" in " ".join(XINGGANPP.read_text().split())
    documented = released_counts()
    for dataset in ("market", "deepfashion"):
        assert sizes(CONFIGS / f"{dataset}_xingganpp.yaml")[1:] == documented[f"{dataset}.yaml"][1:]


def test_enhanced_attention_cost_table():
    rows = table_rows(XINGGANPP, EA_TABLE)
    assert len(rows) == 6
    for row in rows:
        n, params = count(row[2]), count(row[3])
        with torch.device("meta"):
            module = EnhancedAttention(n, n, dim=64)  # enhanced_attention_dim of both configs
        assert count_parameters(module) == params, row[:3]
    for dataset in ("market", "deepfashion"):
        assert load_config([CONFIGS / f"{dataset}_xingganpp.yaml"]).model.generator.enhanced_attention_dim == 64


@pytest.mark.parametrize("document", ["README.md", "docs/networks.md"])
def test_no_parameter_table_outside_its_home(document):
    for header, _ in tables(REPO / document):
        assert not any("param" in cell.lower() for cell in header), (document, header)


def test_released_counts_have_one_home():
    pages = [REPO / "README.md", REPO / "benchmarks" / "README.md"]
    pages += [p for p in sorted((REPO / "docs").glob("*.md")) if p != ARCHITECTURE]
    numbers = {f"{n:,}" for triple in released_counts().values() for n in triple}
    for page in pages:
        if page.exists():
            text = page.read_text()
            written = sorted(n for n in numbers if n in text)
            assert not written, f"{page.relative_to(REPO)} repeats {written}; link to docs/architecture.md"
