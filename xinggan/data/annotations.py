"""Keypoint annotation files, pair files, the Market pair rule and DeepFashion flat names.

Annotation files (PATN's format): header ``name:keypoints_y:keypoints_x`` (trailing commas
accepted), rows ``<name>: [y0, ..., y17]: [x0, ..., x17]``, -1 for a missing joint. Pair files:
CSV with header ``from,to``. Malformed input raises :class:`DataError` naming file and line.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ..joints import FLIP_PERMUTATION, JOINT_NAMES, NUM_JOINTS, TORSO_JOINTS

__all__ = [
    "ANNOTATION_HEADER",
    "DataError",
    "FLIP_PERMUTATION",
    "JOINT_NAMES",
    "MISSING",
    "NUM_JOINTS",
    "PAIRS_HEADER",
    "TORSO_JOINTS",
    "build_pairs",
    "deepfashion_flat_name",
    "person_id",
    "read_annotations",
    "read_pairs",
    "write_annotations",
    "write_pairs",
]

MISSING = -1
ANNOTATION_HEADER = "name:keypoints_y:keypoints_x"
PAIRS_HEADER = "from,to"

# Market-1501 names of distractor (-1) and junk (0000) images, never used in pairs.
_EXCLUDED_PREFIXES = ("-1", "0000")


class DataError(ValueError):
    """A dataset file is missing, malformed or inconsistent; the message names the file."""


def _where(path: Path | str, line: int | None = None) -> str:
    return f"{path}, line {line}" if line is not None else f"{path}"


def _reporter(errors: list[str] | None):
    """``fail(message)``: raise :class:`DataError`, or collect into ``errors`` when given."""
    def fail(message: str) -> None:
        if errors is None:
            raise DataError(message)
        errors.append(message)
    return fail


def _lines_or_report(path: Path, fail) -> list | None:
    try:
        return _read_lines(path)
    except DataError as e:
        fail(str(e))
        return None


def _is_header(line: str, header: str) -> bool:
    # Tolerate trailing separators written by spreadsheet/pandas round trips ("name:...,,,,").
    return line.strip().rstrip(",").replace(" ", "") == header


def _parse_int_list(text: str, path: Path | str, line_no: int, field: str) -> list[int]:
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise DataError(
            f"{_where(path, line_no)}: {field} must be a bracketed list of {NUM_JOINTS} "
            f"integers, got {text[:60]!r}"
        )
    items = text[1:-1].split(",")
    if len(items) != NUM_JOINTS:
        raise DataError(
            f"{_where(path, line_no)}: {field} has {len(items)} values, expected {NUM_JOINTS}"
        )
    try:
        return [int(v) for v in items]
    except ValueError:
        bad = next((v for v in items if not v.strip().lstrip("-").isdigit()), text)
        raise DataError(
            f"{_where(path, line_no)}: {field} holds a non-integer value {bad.strip()!r}"
        ) from None


def _parse_annotation_row(line: str, path: Path | str, line_no: int) -> tuple[str, list[int], list[int]]:
    fields = line.split(":")
    if len(fields) != 3:
        raise DataError(
            f"{_where(path, line_no)}: expected 3 ':'-separated fields "
            f"(name: [y...]: [x...]), got {len(fields)}"
        )
    name = fields[0].strip()
    if not name:
        raise DataError(f"{_where(path, line_no)}: empty image name")
    ys = _parse_int_list(fields[1], path, line_no, "keypoints_y")
    xs = _parse_int_list(fields[2], path, line_no, "keypoints_x")
    return name, ys, xs


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, "r", encoding="utf-8-sig", newline="") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e})") from None


def parse_annotation_file(path: str | os.PathLike, errors: list[str] | None = None) -> dict[str, np.ndarray]:
    """Parse an annotation file; with ``errors`` given, collect every problem instead of raising
    and keep the well-formed rows only."""
    path = Path(path)

    fail = _reporter(errors)
    lines = _lines_or_report(path, fail)
    if lines is None:
        return {}
    if not lines or not _is_header(lines[0], ANNOTATION_HEADER):
        first = lines[0][:60] if lines else ""
        fail(f"{_where(path, 1)}: expected the header {ANNOTATION_HEADER!r}, got {first!r}")
        return {}

    names: list[str] = []
    coords: list[list[int]] = []
    first_line: dict[str, int] = {}
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            name, ys, xs = _parse_annotation_row(line, path, line_no)
        except DataError as e:
            fail(str(e))
            continue
        if name in first_line:
            fail(f"{_where(path, line_no)}: duplicate image name {name!r} "
                 f"(first given on line {first_line[name]})")
            continue
        first_line[name] = line_no
        names.append(name)
        coords.append(ys + xs)

    if not names:
        return {}
    # (N, 2, 18) -> (N, 18, 2): one (y, x) row per joint.
    table = np.asarray(coords, dtype=np.int64).reshape(len(names), 2, NUM_JOINTS).transpose(0, 2, 1)
    table = np.ascontiguousarray(table)
    return {name: table[i] for i, name in enumerate(names)}


def read_annotations(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an annotation CSV into ``{image name: int64 array (18, 2) of (y, x)}``; out-of-frame
    values are kept. Raises :class:`DataError` at the first malformed row."""
    return parse_annotation_file(path)


def parse_pairs_file(path: str | os.PathLike, errors: list[str] | None = None) -> list[tuple[str, str]]:
    """Parse a pairs file; with ``errors`` given, collect every problem instead of raising."""
    path = Path(path)

    fail = _reporter(errors)
    lines = _lines_or_report(path, fail)
    if lines is None:
        return []
    if not lines or not _is_header(lines[0], PAIRS_HEADER):
        first = lines[0][:60] if lines else ""
        fail(f"{_where(path, 1)}: expected the header {PAIRS_HEADER!r}, got {first!r}")
        return []
    pairs: list[tuple[str, str]] = []
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2 or not fields[0] or not fields[1]:
            fail(f"{_where(path, line_no)}: expected two comma-separated image names "
                 f"'from,to', got {line[:80]!r}")
            continue
        pairs.append((fields[0], fields[1]))
    return pairs


def read_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Read a pairs CSV (header ``from,to``) into a list of (source, target) names, in file order."""
    return parse_pairs_file(path)


def write_annotations(path: str | os.PathLike, annotations: Mapping[str, np.ndarray]) -> None:
    """Write annotations in the Market/PATN format: ``name: [y, ...]: [x, ...]``, in the given order."""
    path = Path(path)
    rows = [ANNOTATION_HEADER]
    for name, keypoints in annotations.items():
        kp = np.asarray(keypoints)
        if kp.shape != (NUM_JOINTS, 2):
            raise DataError(f"{path}: keypoints of {name!r} have shape {kp.shape}, expected (18, 2)")
        ys = [int(v) for v in kp[:, 0]]
        xs = [int(v) for v in kp[:, 1]]
        rows.append(f"{name}: {ys}: {xs}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def write_pairs(path: str | os.PathLike, pairs: Iterable[tuple[str, str]]) -> None:
    """Write a pairs CSV with header ``from,to``."""
    rows = [PAIRS_HEADER] + [f"{a},{b}" for a, b in pairs]
    Path(path).write_text("\n".join(rows) + "\n", encoding="utf-8")


def person_id(name: str) -> str:
    """Market-1501 person id: the file-name prefix before the first ``_``."""
    return name.split("_", 1)[0]


def build_pairs(annotations: Mapping[str, np.ndarray]) -> list[tuple[str, str]]:
    """The Market-1501 training pairs, sorted: every ordered pair of distinct images of one person
    id with both shoulders and hips annotated, distractors (``-1``) and junk (``0000``) left out."""
    by_person: dict[str, list[str]] = defaultdict(list)
    for name, keypoints in annotations.items():
        if name.startswith(_EXCLUDED_PREFIXES):
            continue
        kp = np.asarray(keypoints)
        torso = kp[list(TORSO_JOINTS)]
        if (torso == MISSING).any():
            continue
        by_person[person_id(name)].append(name)
    pairs = [(a, b) for names in by_person.values() for a in names for b in names if a != b]
    pairs.sort()
    return pairs


def deepfashion_flat_name(raw_path: str) -> str:
    """The flat PATN / XingGAN name of a raw DeepFashion In-shop path (a flat name is returned as is):
    ``img/WOMEN/Blouses_Shirts/id_00003372/03_3_back.jpg`` ->
    ``fashionWOMENBlouses_Shirtsid0000337203_3back.jpg``."""
    parts = [p for p in raw_path.replace("\\", "/").split("/") if p and p != "."]
    if len(parts) == 1:
        return parts[0]
    if len(parts) < 4:
        raise DataError(
            f"{raw_path!r} is not a DeepFashion In-shop path "
            "(expected <folder>/<MEN|WOMEN>/<category>/id_XXXXXXXX/NN_k_view.jpg)"
        )
    gender, category, item, filename = parts[-4:]
    pieces = filename.split("_", 2)
    if not item.startswith("id_") or len(pieces) != 3:
        raise DataError(
            f"{raw_path!r} is not a DeepFashion In-shop path "
            "(expected .../id_XXXXXXXX/NN_k_view.jpg)"
        )
    return "fashion" + gender + category + "id" + item[3:] + pieces[0] + "_" + pieces[1] + pieces[2]
