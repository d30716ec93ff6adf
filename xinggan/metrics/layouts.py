"""Result folders as the pose-transfer repositories publish them: which file holds which pair.

Layouts ``stems`` (ours), ``strips`` (PATN / XingGAN 5-panel strips), ``names`` and ``2`` (GFLA ..
CFLD) are described in docs/data_and_metrics.md; :func:`resolve_results` matches a folder's files to
the pairs of a pairs CSV or takes the pairs from the names (sorted, or ``os.listdir`` order).
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from PIL import Image

from ..data.pairs import PAIR_SEPARATOR

__all__ = ["LAYOUTS", "Layout", "LayoutError", "PanelRef", "ResultSet", "infer_layout", "resolve_results",
           "strip_image_name"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
STRIP_PANELS = 5            # source | source pose | target | target pose | generated
STRIP_TARGET_PANEL = 2
STRIP_GENERATED_PANEL = 4
_SHOW = 5


class LayoutError(ValueError):
    """A results folder whose names match no layout, several layouts, or not the pairs given."""


def strip_image_name(name: str) -> str:
    """``'x.jpg'`` -> ``'x'``; also drops a ``_vis`` suffix and repeated extensions."""
    changed = True
    while changed:
        changed = False
        for suffix in IMAGE_EXTENSIONS + ("_vis",):
            if name.lower().endswith(suffix):
                name, changed = name[: -len(suffix)], True
    return name


@dataclass(frozen=True)
class Layout:
    name: str
    pattern: str          # regular expression on the file name with groups 'source' and 'target'
    example: str
    strips: Optional[bool]  # True: 5-panel strips; False: single images; None: from the image width
    description: str
    template: str         # the file name(s) of the pair (a, b), a and b without extensions

    def expected(self, source: str, target: str) -> str:
        """The file name(s) this layout gives the pair (source, target)."""
        return self.template.format(a=strip_image_name(source), b=strip_image_name(target))

    def parse(self, filename: str) -> Optional[list[tuple[str, str]]]:
        """Every (source, target) reading of ``filename`` (several when a separator repeats)."""
        if self.name == "2":
            match = re.fullmatch(r"(?P<body>.+?)(?:_vis)?\.(?:png|jpe?g)", filename, re.IGNORECASE)
            if not match:
                return None
            body = match.group("body")
            readings = []
            for found in re.finditer(r"(?=_2_)", body):
                source, target = body[:found.start()], body[found.start() + 3:]
                if source and target:
                    readings.append((source, target))
            return readings or None
        match = re.fullmatch(self.pattern, filename, re.IGNORECASE)
        if not match:
            return None
        return [(match.group("source"), match.group("target"))]


_NO_EXT = r"(?:(?!\.(?:jpe?g|png)(?:___|_vis|$)).)+?"
LAYOUTS = {
    "stems": Layout("stems", rf"(?P<source>{_NO_EXT})___(?P<target>{_NO_EXT})\.(?:png|jpe?g)",
                    "0002_c1s1_000451_03___0002_c5s1_000551_01.png", False,
                    "<from stem>___<to stem>.png|jpg, one image per pair (this project's output)",
                    "{a}" + PAIR_SEPARATOR + "{b}.png|.jpg"),
    "strips": Layout("strips", r"(?P<source>.+?\.jpe?g)___(?P<target>.+?\.jpe?g)_vis\.(?:png|jpe?g)",
                     "0002_c1s1_000451_03.jpg___0002_c5s1_000551_01.jpg_vis.jpg", True,
                     "PATN / XingGAN / BiGraphGAN 5-panel strips <from>.jpg___<to>.jpg_vis.jpg",
                     "{a}.jpg" + PAIR_SEPARATOR + "{b}.jpg_vis.jpg|.png"),
    "names": Layout("names", r"(?P<source>.+?\.jpe?g)___(?P<target>.+?\.jpe?g)\.(?:png|jpe?g)",
                    "0002_c1s1_000451_03.jpg___0002_c5s1_000551_01.jpg.png", False,
                    "<from>.jpg___<to>.jpg.png|jpg, one image per pair", "{a}.jpg" + PAIR_SEPARATOR + "{b}.jpg.png|.jpg"),
    "2": Layout("2", "", "0002_c1s1_000451_03_2_0002_c5s1_000551_01_vis.png", None,
                "GFLA / PISE / DPTN / NTED / PIDM / CFLD <from>_2_<to>[_vis].png, single images or strips",
                "{a}_2_{b}[_vis].png|.jpg"),
}


@dataclass(frozen=True)
class PanelRef:
    """One image: the whole file, or panel ``panel`` of ``panels`` equal-width panels."""

    path: Path
    panel: Optional[int] = None
    panels: int = 1

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class ResultSet:
    layout: Layout
    pairs: list            # (source name, target name); names as in the pairs CSV or the file names
    generated: list        # PanelRef per pair
    strip_targets: Optional[list]  # PanelRef per pair (target panel of each strip) or None
    panels: int            # panels per file (1: single images)
    pairs_from_files: bool

    def summary(self, folder: Path) -> str:
        kind = (f"{self.panels}-panel strips, generated = panel {self.generated[0].panel}"
                if self.panels > 1 else "single images")
        source = "pairs from the file names" if self.pairs_from_files else "pairs from the pairs CSV"
        return (f"{folder}: layout '{self.layout.name}' ({self.layout.description}); {kind}; "
                f"{len(self.pairs)} pairs ({source})")


def listing(items: Sequence[str]) -> str:
    """The first few of ``items``, one per indented line, for an error message."""
    shown = "\n  ".join(items[:_SHOW])
    more = f"\n  ... and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
    return f"\n  {shown}{more}"


def _image_files(folder: Path, file_order: str) -> list[str]:
    if not folder.is_dir():
        raise LayoutError(f"generated images folder {folder} does not exist")
    names = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS) and (folder / n).is_file()]
    if file_order == "sorted":
        names.sort()
    elif file_order != "listdir":
        raise ValueError(f"file_order must be 'sorted' or 'listdir', got {file_order!r}")
    return names


def infer_layout(names: Sequence[str], folder: Path) -> Layout:
    """The one layout whose pattern explains the files; an error with examples otherwise."""
    if not names:
        raise LayoutError(f"{folder}: no .png/.jpg images")
    matched = {key: [n for n in names if layout.parse(n)] for key, layout in LAYOUTS.items()}
    everything = [key for key, hits in matched.items() if len(hits) == len(names)]
    some = [key for key, hits in matched.items() if hits]
    # '_2_' is the loosest pattern (Market and DeepFashion names may hold '_2_' themselves): a
    # stricter layout that explains the files wins over it.
    for group in (everything, some):
        if len(group) > 1 and "2" in group:
            group.remove("2")
    if len(everything) == 1:
        return LAYOUTS[everything[0]]
    known = "\n".join(f"  --layout {k}: {layout.description}, e.g. {layout.example}" for k, layout in LAYOUTS.items())
    if len(everything) > 1 or len(some) > 1:
        candidates = everything if len(everything) > 1 else some
        examples = "\n".join(f"  {k}: {len(matched[k])} file(s), e.g. {matched[k][0]}" for k in candidates)
        raise LayoutError(f"{folder}: the file names fit several layouts; pass --layout:\n{examples}\n"
                          f"layouts:\n{known}")
    if len(some) == 1:
        return LAYOUTS[some[0]]  # files that fit no layout are reported by resolve_results
    raise LayoutError(f"{folder}: no file name fits a known layout (e.g. {names[0]}); expected one of:\n{known}")


def _panel_count(path: Path, image_width: Optional[int]) -> int:
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception as error:  # PIL raises several types for broken files
        raise LayoutError(f"{path}: cannot read image ({type(error).__name__}: {error})") from None
    if image_width and width % image_width == 0:
        return width // image_width
    return 1


def _file_of_each_pair(parsed: dict, pairs: Optional[list], folder: Path) -> tuple[dict, dict]:
    """``(pair key -> file, file -> pair as read)``; keys compare names without extensions, and
    ``pairs`` decides names that split more than one way."""
    wanted = None
    if pairs is not None:
        wanted = {(strip_image_name(s), strip_image_name(t)) for s, t in pairs}
    by_key: dict[tuple[str, str], str] = {}
    raw_pair: dict[str, tuple[str, str]] = {}
    ambiguous = []
    for name, readings in parsed.items():
        if not readings:
            continue
        keys = [(strip_image_name(s), strip_image_name(t)) for s, t in readings]
        if len(keys) > 1:
            fitting = [i for i, k in enumerate(keys) if wanted is not None and k in wanted]
            if len(fitting) != 1:
                ambiguous.append(f"{name}: " + " | ".join(f"{s} -> {t}" for s, t in readings))
                continue
            keys, readings = [keys[fitting[0]]], [readings[fitting[0]]]
        key = keys[0]
        if key in by_key:
            raise LayoutError(f"{folder}: two files for the pair {key[0]} -> {key[1]}: {by_key[key]} and {name}")
        by_key[key] = name
        raw_pair[name] = readings[0]
    if ambiguous:
        raise LayoutError(f"{folder}: {len(ambiguous)} name(s) can be split at more than one '_2_'"
                          + (" and the pairs CSV does not decide" if wanted is not None else
                             "; pass the pairs CSV (--pairs)") + ":" + listing(ambiguous))
    return by_key, raw_pair


def _files_in_pair_order(names: list, by_key: dict, pairs: list, pairs_csv, chosen: Layout, folder: Path) -> list:
    """The file of each pair of the pairs CSV; a missing one is an error, an extra one a warning."""
    files, missing = [], []
    for line, (source, target) in enumerate(pairs, start=2):
        key = (strip_image_name(source), strip_image_name(target))
        if key in by_key:
            files.append(by_key[key])
        else:
            missing.append(f"{chosen.expected(source, target)}  (pair {source},{target} on line {line} "
                           f"of {pairs_csv})")
    if missing:
        raise LayoutError(f"{len(missing)} of {len(pairs)} generated images are missing in {folder} "
                          f"(layout '{chosen.name}'):" + listing(missing))
    extra = sorted(set(names) - set(files))
    if extra:
        warnings.warn(f"{len(extra)} image(s) in {folder} belong to no pair of {pairs_csv} and are "
                      f"ignored:" + listing(extra), stacklevel=4)
    return files


def _panels(chosen: Layout, first: Path, image_width: Optional[int], panel: Optional[int]) -> tuple[int, Optional[int]]:
    """``(panels per file, panel of the generated image)``: strips or single images."""
    folder = first.parent
    if chosen.strips is True:
        panels = _panel_count(first, image_width) if image_width else STRIP_PANELS
        if panels != STRIP_PANELS and image_width:
            raise LayoutError(f"{first}: a '{chosen.name}' strip should hold {STRIP_PANELS} panels of "
                              f"width {image_width}; its width is not {STRIP_PANELS * image_width}")
    elif chosen.strips is False:
        panels = 1
    else:
        panels = _panel_count(first, image_width) if image_width else 1
    if panels > 1:
        if panel is None:
            if panels != STRIP_PANELS or chosen.name != "strips":
                raise LayoutError(f"{folder}: the images are strips of {panels} panels; pass --panel K "
                                  f"(0-based) for the generated image")
            panel = STRIP_GENERATED_PANEL
        if not 0 <= panel < panels:
            raise LayoutError(f"--panel {panel}: the strips in {folder} have panels 0..{panels - 1}")
    elif panel not in (None, 0):
        raise LayoutError(f"--panel {panel}: the images in {folder} are single images, not strips")
    return panels, panel


def resolve_results(generated_dir, pairs: Optional[list] = None, pairs_csv=None, layout: Optional[str] = None,
                    panel: Optional[int] = None, image_width: Optional[int] = None,
                    file_order: str = "sorted") -> ResultSet:
    """Match the files of ``generated_dir`` to ``pairs`` (or take the pairs from the names); ``image_width``
    (one dataset image's) tells strips from single images; ``panel``: the generated one's (default 4)."""
    folder = Path(generated_dir)
    names = _image_files(folder, file_order)
    if layout is None:
        chosen = infer_layout(names, folder)
    elif layout in LAYOUTS:
        chosen = LAYOUTS[layout]
    else:
        raise LayoutError(f"unknown layout {layout!r}; choose one of {sorted(LAYOUTS)}")

    parsed = {n: chosen.parse(n) for n in names}
    unparsed = [n for n, p in parsed.items() if not p]
    if unparsed and pairs is None:
        raise LayoutError(f"{folder}: {len(unparsed)} of {len(names)} file(s) do not fit layout "
                          f"'{chosen.name}' ({chosen.example}):" + listing(unparsed))
    by_key, raw_pair = _file_of_each_pair(parsed, pairs, folder)
    if pairs is None:
        files = [n for n in names if n in raw_pair]
        pair_list = [raw_pair[n] for n in files]
    else:
        files, pair_list = _files_in_pair_order(names, by_key, pairs, pairs_csv, chosen, folder), list(pairs)
    if not files:
        raise LayoutError(f"{folder}: no pairs")

    panels, panel = _panels(chosen, folder / files[0], image_width, panel)
    generated = [PanelRef(folder / f, panel if panels > 1 else None, panels) for f in files]
    strip_targets = None
    if chosen.name == "strips" and panels == STRIP_PANELS:
        strip_targets = [PanelRef(folder / f, STRIP_TARGET_PANEL, panels) for f in files]
    return ResultSet(chosen, pair_list, generated, strip_targets, panels, pairs is None)
