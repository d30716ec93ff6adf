"""The qualitative comparison figure: one row per test pair; columns source, target pose, target,
then one per method, with the method names above the columns.

Sources, targets and target poses come from the dataset of a config (its test split: pairs CSV,
annotation file, images); the target pose is drawn with :func:`xinggan.visualize.draw_skeleton`.
Each method is a folder of results in any layout ``scripts/evaluate.py`` reads
(:mod:`xinggan.metrics.layouts`: this project's ``<from>___<to>.png``, the released 5-panel
strips, ...), or a run folder holding one (``<run>/images``, ``<variant>/results/images``).

Pairs: a list of ``<from>___<to>`` names (:func:`xinggan.inference.result_stem`), or chosen:
``spread`` takes the pairs where the methods' SSIM against the target (the config's preset's
SSIM, :func:`xinggan.metrics.ssim.ssim`) differs most (max - min over the methods), ``random`` a
seeded sample, ``first`` the first pairs of the pairs CSV. A pair that a method lacks is an error
naming both.

Output: a PNG in which every image is pasted at its own pixel size (no resampling), and a
one-page PDF of the same geometry (1 pixel = 1 point) in which every image is its own
lossless (Flate) image object at its native pixel size, drawn without interpolation, and the
labels are text in Helvetica.
"""
from __future__ import annotations

import random
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["FigureError", "FigureLayout", "Method", "build_figure", "parse_methods", "read_pair_list",
           "select_pairs", "write_pdf", "write_png", "FIXED_COLUMNS"]

FIXED_COLUMNS = ("source", "target pose", "target")


class FigureError(ValueError):
    """Bad input to the figure; one line naming the file, method or pair."""


@dataclass(frozen=True)
class Method:
    name: str
    folder: Path           # the folder of images that was read
    panels: dict           # (source stem, target stem) -> PanelRef


@dataclass(frozen=True)
class FigureLayout:
    """Pixel geometry of the figure (the PDF uses the same numbers in points)."""

    rows: int
    columns: int
    panel_height: int
    panel_width: int
    gap: int
    margin: int
    header: int            # height of the band of column labels
    font_size: int

    @property
    def width(self) -> int:
        return 2 * self.margin + self.columns * self.panel_width + (self.columns - 1) * self.gap

    @property
    def height(self) -> int:
        return 2 * self.margin + self.header + self.rows * self.panel_height + (self.rows - 1) * self.gap

    def origin(self, row: int, column: int) -> tuple:
        """(x, y) of the top-left pixel of panel (row, column)."""
        return (self.margin + column * (self.panel_width + self.gap),
                self.margin + self.header + row * (self.panel_height + self.gap))


# -- inputs -------------------------------------------------------------------------------------


def parse_methods(specs: Sequence[str]) -> list:
    """``NAME=FOLDER`` (or a bare folder, named after itself) -> [(name, Path)]."""
    methods, seen = [], set()
    for spec in specs:
        if Path(spec).exists() or "=" not in spec:
            name, folder = Path(spec).name, Path(spec)
        else:
            name, _, text = spec.partition("=")
            folder = Path(text)
        if not name:
            raise FigureError(f"{spec}: empty method name (expected NAME=FOLDER)")
        if name in seen:
            raise FigureError(f"{spec}: method name {name!r} given twice")
        if not folder.is_dir():
            raise FigureError(f"{spec}: {folder} is not a folder of results")
        seen.add(name)
        methods.append((name, folder))
    if not methods:
        raise FigureError("no methods: pass NAME=FOLDER for each method to compare")
    return methods


def _images_folder(folder: Path) -> Path:
    """The folder holding the images: ``folder/images`` or ``folder/results/images`` (a run folder
    of test.py or of a sweep variant, whose own grid.png is no result), else ``folder`` itself."""
    from xinggan.metrics.layouts import IMAGE_EXTENSIONS

    for candidate in (folder / "images", folder / "results" / "images", folder):
        if candidate.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in candidate.iterdir()):
            return candidate
    raise FigureError(f"{folder}: no .png/.jpg results in it, nor in its images/ or results/images/")


def read_method(name: str, folder: Path, dataset_pairs: Sequence, image_width: int) -> Method:
    """Which file (or strip panel) holds each pair's generated image in ``folder``."""
    from xinggan.metrics.layouts import LayoutError, resolve_results, strip_image_name

    images = _images_folder(folder)
    try:
        found = resolve_results(images, image_width=image_width)
    except LayoutError as exc:
        if "more than one '_2_'" not in str(exc):
            raise FigureError(f"{name}={folder}: {str(exc).splitlines()[0]}") from None
        try:  # names that split in several places: the dataset's pairs decide
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = resolve_results(images, pairs=list(dataset_pairs), image_width=image_width)
        except LayoutError as again:
            raise FigureError(f"{name}={folder}: {str(again).splitlines()[0]}") from None
    panels = {(strip_image_name(s), strip_image_name(t)): ref for (s, t), ref in zip(found.pairs, found.generated)}
    return Method(name, images, panels)


def load_panel(ref) -> np.ndarray:
    """The (H, W, 3) uint8 image a :class:`~xinggan.metrics.layouts.PanelRef` points at."""
    with Image.open(ref.path) as image:
        rgb = np.asarray(image.convert("RGB"))
    if ref.panel is not None and ref.panels > 1:
        width = rgb.shape[1] // ref.panels
        rgb = rgb[:, ref.panel * width:(ref.panel + 1) * width]
    return np.ascontiguousarray(rgb)


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB")).copy()
    except (OSError, ValueError) as exc:
        raise FigureError(f"{path}: cannot read image ({exc})") from None


def read_pair_list(path: Path) -> list:
    """``<from>___<to>`` per line (blank lines and ``#`` comments skipped) -> [(stem, stem, line)]."""
    from xinggan.data.pairs import PAIR_SEPARATOR
    from xinggan.metrics.layouts import strip_image_name

    out = []
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise FigureError(f"--pairs {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.count(PAIR_SEPARATOR) != 1:
            raise FigureError(f"{path}:{number}: {line!r} is not a <from>{PAIR_SEPARATOR}<to> pair name")
        a, b = line.split(PAIR_SEPARATOR)
        out.append((strip_image_name(a.strip()), strip_image_name(b.strip()), f"{path}:{number}"))
    if not out:
        raise FigureError(f"--pairs {path}: no pair names in it")
    return out


# -- choosing the rows ------------------------------------------------------------------------


def _spread(methods: Sequence[Method], keys: Sequence, targets: dict, settings, unit: bool,
            chunk: int = 64) -> np.ndarray:
    """Per pair: max - min over the methods of SSIM(generated, target)."""
    import torch

    from xinggan.metrics.ssim import ssim

    scores = np.zeros((len(methods), len(keys)))
    for start in range(0, len(keys), chunk):
        part = keys[start:start + chunk]
        target = torch.from_numpy(np.stack([targets[k]() for k in part])).permute(0, 3, 1, 2).double()
        for m, method in enumerate(methods):
            generated = torch.from_numpy(np.stack([load_panel(method.panels[k]) for k in part]))
            generated = generated.permute(0, 3, 1, 2).double()
            if generated.shape != target.shape:
                raise FigureError(f"{method.name}: its images are {generated.shape[2]}x{generated.shape[3]}, "
                                  f"the dataset's {target.shape[2]}x{target.shape[3]} (HxW)")
            if unit:
                scores[m, start:start + len(part)] = ssim(generated / 255, target / 255, settings).numpy()
            else:
                scores[m, start:start + len(part)] = ssim(generated, target, settings).numpy()
    return scores.max(axis=0) - scores.min(axis=0)


def select_pairs(dataset, methods: Sequence[Method], rows: int, select: str = "spread",
                 seed: int = 0, pair_list: Optional[list] = None, protocol: str = "patn-market") -> list:
    """The dataset pairs (source name, target name) of the figure's rows, in row order."""
    from xinggan.metrics.layouts import strip_image_name

    by_key = {(strip_image_name(a), strip_image_name(b)): (a, b) for a, b in dataset.pairs}
    if pair_list is not None:
        chosen = []
        for a, b, where in pair_list:
            if (a, b) not in by_key:
                raise FigureError(f"{where}: pair {a}___{b} is not a test pair of {dataset.pairs_path or dataset.root}")
            for method in methods:
                if (a, b) not in method.panels:
                    raise FigureError(f"method {method.name} has no image of pair {a}___{b} ({where}) in {method.folder}")
            chosen.append(by_key[(a, b)])
        return chosen
    if rows < 1:
        raise FigureError(f"--rows {rows}: must be at least 1")
    keys = [k for k in by_key if all(k in m.panels for m in methods)]
    if not keys:
        fewest = min(methods, key=lambda m: sum(k in m.panels for k in by_key))
        raise FigureError(f"method {fewest.name} has no image of any test pair of "
                          f"{dataset.pairs_path or dataset.root} in {fewest.folder}")
    if select == "first":
        picked = keys[:rows]
    elif select == "random":
        picked = random.Random(seed).sample(keys, min(rows, len(keys)))
    elif select == "spread":
        if len(methods) < 2:
            raise FigureError("--select spread needs at least two methods (use first or random)")
        from xinggan.metrics.protocols import get_protocol

        preset = get_protocol(protocol)
        targets = {k: (lambda k=k: _read_rgb(dataset.image_dir / by_key[k][1])) for k in keys}
        spread = _spread(methods, keys, targets, preset.ssim, preset.ssim_input == "unit")
        order = sorted(range(len(keys)), key=lambda i: (-spread[i], i))
        picked = [keys[i] for i in order[:rows]]
    else:
        raise FigureError(f"--select {select!r}: choose spread, random or first")
    return [by_key[k] for k in picked]


# -- drawing -------------------------------------------------------------------------------------


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1: one bitmap size
        return ImageFont.load_default()


def _text_width(font, text: str) -> float:
    return font.getlength(text) if hasattr(font, "getlength") else font.getsize(text)[0]


def _wrap(text: str, font, width: int) -> Optional[list]:
    """Greedy word wrap into lines no wider than ``width``; None if a word alone is wider."""
    lines: list = []
    for word in text.split():
        if _text_width(font, word) > width:
            return None
        if lines and _text_width(font, lines[-1] + " " + word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def _label_layout(labels: Sequence[str], column_width: int, height: int):
    """(font size, [lines per label]): the largest size from about 1/10 of the image height
    (9 to 24 px) down to 7 px at which every label fits its column, wrapped at spaces; at 7 px a
    label that still does not fit is kept on one line and may overhang its neighbours."""
    start = min(24, max(9, round(height / 10)))
    for size in range(start, 6, -1):
        font = _font(size)
        wrapped = [_wrap(label, font, column_width) for label in labels]
        if all(w is not None for w in wrapped):
            return size, wrapped
    return 7, [[label] for label in labels]


def build_figure(columns: Sequence[Sequence[np.ndarray]], labels: Sequence[str]):
    """Lay out ``columns`` (each a list of (H, W, 3) uint8 images, one per row) under ``labels``.
    Returns (PNG image, layout, label lines)."""
    rows = len(columns[0])
    heights = {img.shape[0] for col in columns for img in col}
    widths = {img.shape[1] for col in columns for img in col}
    if len(heights) != 1 or len(widths) != 1:
        raise FigureError(f"the images have several sizes (heights {sorted(heights)}, widths {sorted(widths)}); "
                          "a figure needs one size")
    h, w = heights.pop(), widths.pop()
    gap = max(2, round(w / 16))
    size, lines = _label_layout(labels, w, h)
    line_height = round(size * 1.25)
    header = max(len(x) for x in lines) * line_height + gap
    layout = FigureLayout(rows, len(columns), h, w, gap, gap, header, size)
    canvas = Image.new("RGB", (layout.width, layout.height), (255, 255, 255))
    for c, column in enumerate(columns):
        for r, image in enumerate(column):
            canvas.paste(Image.fromarray(image), layout.origin(r, c))
    draw = ImageDraw.Draw(canvas)
    font = _font(size)
    for c, label_lines in enumerate(lines):
        centre = layout.origin(0, c)[0] + w / 2
        for i, line in enumerate(label_lines):
            y = layout.margin + i * line_height
            draw.text((centre - _text_width(font, line) / 2, y), line, fill=(0, 0, 0), font=font)
    return canvas, layout, lines


def write_png(canvas: Image.Image, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


# Helvetica advance widths (1/1000 em) for WinAnsi codes 32..126, the standard font's metrics.
_HELVETICA = [278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
              556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
              1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
              667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
              333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
              556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584]


def helvetica_width(text: str, size: float) -> float:
    """Width in points of ``text`` set in Helvetica at ``size`` points."""
    total = 0
    for byte in text.encode("cp1252", errors="replace"):
        total += _HELVETICA[byte - 32] if 32 <= byte <= 126 else 556
    return total * size / 1000


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def write_pdf(columns: Sequence[Sequence[np.ndarray]], lines: Sequence, layout: FigureLayout, path: Path,
              title: str = "") -> Path:
    """A one-page PDF: each image an 8-bit RGB image object (Flate, lossless) at its pixel size,
    placed at the PNG's geometry with 1 pixel = 1 point; labels in Helvetica."""
    page_w, page_h = layout.width, layout.height
    objects: list = []  # bodies; object i + 1

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in below, once the page tree exists
    pages = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    content = [b"q"]
    xobjects = []
    for c, column in enumerate(columns):
        for r, image in enumerate(column):
            h, w = image.shape[:2]
            data = zlib.compress(np.ascontiguousarray(image, dtype=np.uint8).tobytes(), 9)
            ref = add(b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB "
                      b"/BitsPerComponent 8 /Interpolate false /Filter /FlateDecode /Length %d >>\nstream\n"
                      % (w, h, len(data)) + data + b"\nendstream")
            name = b"Im%d" % len(xobjects)
            xobjects.append((name, ref))
            x, y = layout.origin(r, c)
            content.append(b"q %d 0 0 %d %d %d cm /%s Do Q" % (w, h, x, page_h - y - h, name))
    size = layout.font_size
    line_height = round(size * 1.25)
    content.append(b"0 g")
    for c, label_lines in enumerate(lines):
        centre = layout.origin(0, c)[0] + layout.panel_width / 2
        for i, line in enumerate(label_lines):
            baseline = page_h - layout.margin - i * line_height - 0.8 * size  # the PNG line's top, less the ascent
            x = centre - helvetica_width(line, size) / 2
            content.append(b"BT /F1 %d Tf %.2f %.2f Td %s Tj ET" % (size, x, baseline, _pdf_string(line)))
    content.append(b"Q")
    stream = zlib.compress(b"\n".join(content), 9)
    contents = add(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream")
    resources = b"<< /Font << /F1 %d 0 R >> /XObject << %s >> >>" % (
        font, b" ".join(b"/%s %d 0 R" % (n, r) for n, r in xobjects))
    page = add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] /Resources %s /Contents %d 0 R >>"
               % (pages, page_w, page_h, resources, contents))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages
    objects[pages - 1] = b"<< /Type /Pages /Kids [%d 0 R] /Count 1 >>" % page
    info = add(b"<< /Producer (xinggan scripts/figure.py)" +
               (b" /Title " + _pdf_string(title) if title else b"") + b" >>")

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += (b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(objects) + 1, catalog, info, xref))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path


# -- the whole figure ----------------------------------------------------------------------------


def figure_columns(dataset, methods: Sequence[Method], pairs: Sequence) -> tuple:
    """(columns of images, labels) for ``pairs`` (dataset names)."""
    from xinggan.metrics.layouts import strip_image_name
    from xinggan.visualize import draw_skeleton

    sources, poses, targets = [], [], []
    generated = [[] for _ in methods]
    for source, target in pairs:
        src = _read_rgb(dataset.image_dir / source)
        tgt = _read_rgb(dataset.image_dir / target)
        sources.append(src)
        targets.append(tgt)
        poses.append(draw_skeleton(dataset.annotations[target], tgt.shape[0], tgt.shape[1]))
        key = (strip_image_name(source), strip_image_name(target))
        for m, method in enumerate(methods):
            generated[m].append(load_panel(method.panels[key]))
    return [sources, poses, targets] + generated, list(FIXED_COLUMNS) + [m.name for m in methods]


def output_paths(out: Path) -> tuple:
    """(pdf, png) for ``--out``: the name given and its sibling with the other suffix."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".pdf", ".png"):
        raise FigureError(f"--out {out}: the name must end in .pdf or .png (both are written)")
    return out.with_suffix(".pdf"), out.with_suffix(".png")

