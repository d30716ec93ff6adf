"""Turn the raw Market-1501 and DeepFashion downloads into the prepared layout (datasets/README.md).

The images cannot be fetched by code (licences, a password): these functions rearrange what
the user downloaded and say which file is missing and where it comes from. A source folder
that is already prepared is verified (and copied when ``out`` is another folder); each
function ends with :func:`~xinggan.prep.check.check_dataset` on the output.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

from PIL import Image

from ..data.annotations import (DataError, build_pairs, deepfashion_flat_name, read_annotations, read_pairs,
                                write_annotations, write_pairs)
from ..progress import progress as progress_bar
from .check import check_dataset, print_problems

__all__ = ["prepare_deepfashion", "prepare_market"]

log = logging.getLogger(__name__)

MARKET_IMAGES_HELP = (
    "Market-1501 (Market-1501-v15.09.15.zip) is distributed by its authors (Zheng et al., "
    "ICCV 2015) from the Market-1501 project page; unzip it and pass the folder that holds "
    "bounding_box_train/ and bounding_box_test/ as --raw")
MARKET_CSV_HELP = (
    "the Market annotation/pair CSVs (market-annotation-train.csv, market-annotation-test.csv, "
    "market-pairs-test.csv, optionally market-pairs-train.csv) come from the data links "
    "(Google Drive / Baidu Disk) in the README of the Pose-Transfer (PATN) repository, "
    "github.com/tengteng95/Pose-Transfer; put them in --annotations-dir or --raw")
DEEPFASHION_IMAGES_HELP = (
    "DeepFashion In-shop Clothes Retrieval images (img.zip) come from the MMLAB DeepFashion "
    "page (mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html); the archive "
    "password is sent once you accept the dataset agreement; unzip it and pass the folder that "
    "holds img/ as --raw")
DEEPFASHION_CSV_HELP = (
    "train.lst / test.lst (fashion_data/ of github.com/tengteng95/Pose-Transfer) and the "
    "fasion-resize-annotation-{train,test}.csv and fasion-resize-pairs-{train,test}.csv files "
    "(the Google Drive / Baidu Disk data links in that repository's README) go in "
    "--annotations-dir or --raw")
_SHOWN = 5


def _find(name: str, folders: Sequence[Path | None]) -> Path | None:
    for folder in folders:
        if folder is not None and (folder / name).is_file():
            return folder / name
    return None


def _find_dir(names: Sequence[str], root: Path) -> Path | None:
    """``root/<name>`` or ``root/<child>/<name>`` (an unzipped archive folder) for the first name found."""
    for folder in [root] + sorted(p for p in root.iterdir() if p.is_dir()):
        for name in names:
            if (folder / name).is_dir():
                return folder / name
    return None


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _SHOWN else "")


def _copy(src: Path, dst: Path) -> None:
    """Copy unless ``dst`` is ``src`` or already holds a file of the same size."""
    if not (dst.is_file() and (dst.samefile(src) or dst.stat().st_size == src.stat().st_size)):
        shutil.copyfile(src, dst)


def _find_csvs(names: Sequence[str], folders: Sequence[Path | None], help_text: str,
               missing: list[str]) -> dict[str, Path]:
    """Locate each file in the first folder holding it; note the absent ones in ``missing``."""
    found = {n: _find(n, folders) for n in names}
    absent = [n for n, p in found.items() if p is None]
    if absent:
        where = ", ".join(str(f) for f in folders if f is not None)
        missing.append(f"missing {', '.join(absent)} (looked in {where}): {help_text}")
    return found  # type: ignore[return-value]


def _raise_missing(missing: list[str]) -> None:
    if missing:
        raise DataError("\n".join(missing))


def _is_prepared(folder: Path, annotation_pattern: str) -> bool:
    return all((folder / s).is_dir() and (folder / annotation_pattern.format(split=s)).is_file()
               for s in ("train", "test"))


def _folders(raw, out, annotations_dir, help_text: str) -> tuple[Path, Path, Path | None]:
    """(raw, out, annotations folder): ``out`` defaults to ``raw`` (verify in place)."""
    raw = Path(raw)
    if not raw.is_dir():
        raise DataError(f"{raw}: folder not found; {help_text}")
    return (raw, Path(out) if out is not None else raw,
            Path(annotations_dir) if annotations_dir is not None else None)


def prepare_market(raw: str | os.PathLike, out: str | os.PathLike | None = None,
                   annotations_dir: str | os.PathLike | None = None, progress: bool = True,
                   check: bool = True) -> list[str]:
    """Prepare Market-1501 from ``raw`` into ``out`` (default: verify ``raw`` in place).

    Returns the problems :func:`check_dataset` finds in ``out`` (empty: ready to train).
    """
    raw, out, extra = _folders(raw, out, annotations_dir, MARKET_IMAGES_HELP)
    prepared = _is_prepared(raw, "market-annotation-{split}.csv")
    folders = [extra, raw, out]
    missing: list[str] = []
    sources = {s: _find_dir((s,) if prepared else (f"bounding_box_{s}",), raw) for s in ("train", "test")}
    absent = [f"bounding_box_{s}/" for s, p in sources.items() if p is None]
    if absent:
        missing.append(f"{raw}: no {' or '.join(absent)} folder found; {MARKET_IMAGES_HELP}")
    csvs = _find_csvs(["market-annotation-train.csv", "market-annotation-test.csv",
                       "market-pairs-test.csv"], folders, MARKET_CSV_HELP, missing)
    _raise_missing(missing)

    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in ("train", "test"):
        annotations = read_annotations(csvs[f"market-annotation-{split}.csv"])
        present = {p.name for p in sources[split].iterdir() if p.suffix.lower() == ".jpg"}
        missing = sorted(set(annotations) - present)
        if missing:
            raise DataError(f"{sources[split]}: {len(missing)} images of "
                            f"{csvs[f'market-annotation-{split}.csv']} are missing: "
                            f"{_listing(missing)}; {MARKET_IMAGES_HELP}")
        extra_images = len(present - set(annotations))
        if extra_images:
            log.warning("%s: %d images have no annotation and are skipped", sources[split], extra_images)
        dst_dir = out / split
        dst_dir.mkdir(exist_ok=True)
        for name in progress_bar(sorted(annotations), desc=f"Market {split}", unit="img", disable=not progress):
            _copy(sources[split] / name, dst_dir / name)
        _copy(csvs[f"market-annotation-{split}.csv"], out / f"market-annotation-{split}.csv")
        counts[split] = len(annotations)

    _copy(csvs["market-pairs-test.csv"], out / "market-pairs-test.csv")
    train_pairs = _find("market-pairs-train.csv", folders)
    if train_pairs is not None:
        _copy(train_pairs, out / "market-pairs-train.csv")
    else:
        pairs = build_pairs(read_annotations(out / "market-annotation-train.csv"))
        write_pairs(out / "market-pairs-train.csv", pairs)
        log.info("market-pairs-train.csv not found: rebuilt %d training pairs with the PATN rule "
                 "(263,632 on the full Market-1501)", len(pairs))
    log.info("Market-1501 prepared in %s: %d train and %d test images", out, counts["train"], counts["test"])
    return check_dataset(out, 128, 64, ("train", "test"), progress=progress) if check else []


def _convert_deepfashion(src: Path, dst: Path, quality: int) -> None:
    """256 x 256 In-shop image -> columns 40..215 (256 x 176); other sizes are resized first."""
    try:
        with Image.open(src) as img:
            img.load()
            if img.size == (176, 256) and img.format == "JPEG":
                shutil.copyfile(src, dst)  # already cropped
                return
            rgb = img.convert("RGB")
    except OSError as e:
        raise DataError(f"{src}: unreadable image ({e})") from None
    if rgb.size != (256, 256) and rgb.size != (176, 256):
        rgb = rgb.resize((256, 256), Image.BICUBIC)
    if rgb.size == (256, 256):
        rgb = rgb.crop((40, 0, 216, 256))
    partial = dst.with_name(dst.name + ".part")  # an interrupted run leaves no half-written image
    rgb.save(partial, format="JPEG", quality=quality)
    os.replace(partial, dst)


def _flat_csv(src: Path, dst: Path, kind: str) -> None:
    """Copy an annotation (``kind`` "annotation") or pair CSV, rewriting raw In-shop paths as flat names."""
    if kind == "annotation":
        rows = read_annotations(src)
        flat = {deepfashion_flat_name(n): kp for n, kp in rows.items()}
        changed = list(flat) != list(rows)
        write = write_annotations
    else:
        rows = read_pairs(src)
        flat = [(deepfashion_flat_name(a), deepfashion_flat_name(b)) for a, b in rows]
        changed, write = flat != rows, write_pairs
    if changed:
        write(dst, flat)
        log.info("%s: rewrote raw In-shop paths as flat names into %s", src, dst)
    else:
        _copy(src, dst)


def _read_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _inshop_index(image_root: Path, progress: bool) -> dict[str, Path]:
    """Flat name -> path of every In-shop person image under ``image_root``."""
    index: dict[str, Path] = {}
    for path in progress_bar(sorted(image_root.rglob("*.jpg")), desc="index In-shop images", unit="img",
                             disable=not progress, leave=False):
        try:
            index[deepfashion_flat_name("img/" + path.relative_to(image_root).as_posix())] = path
        except DataError:
            continue  # not an In-shop person image (e.g. a stray file)
    return index


def _convert_split(split: str, listing: Path, image_root: Path, index: dict, out: Path, quality: int,
                   progress: bool) -> list[str]:
    """Crop the images of ``listing`` into ``out/split``; problems: the list and annotations disagree."""
    wanted = _read_list(listing)
    annotated = set(read_annotations(out / f"fasion-resize-annotation-{split}.csv"))
    missing = [n for n in wanted if n not in index]
    if missing:
        raise DataError(f"{image_root}: {len(missing)} images of {listing} are missing: "
                        f"{_listing(missing)}; {DEEPFASHION_IMAGES_HELP}")
    problems = []
    if set(wanted) != annotated:
        only_list, only_csv = sorted(set(wanted) - annotated), sorted(annotated - set(wanted))
        problems.append(f"{listing} ({len(wanted)} names) and fasion-resize-annotation-{split}.csv "
                        f"({len(annotated)} rows) differ: {len(only_list)} only in the list ({_listing(only_list)}), "
                        f"{len(only_csv)} only in the annotations ({_listing(only_csv)})")
    (out / split).mkdir(exist_ok=True)
    for name in progress_bar(wanted, desc=f"DeepFashion {split}", unit="img", disable=not progress):
        if not (out / split / name).is_file():
            _convert_deepfashion(index[name], out / split / name, quality)
    _copy(listing, out / f"{split}.lst")
    return problems


def prepare_deepfashion(raw: str | os.PathLike, out: str | os.PathLike | None = None,
                        annotations_dir: str | os.PathLike | None = None, progress: bool = True,
                        quality: int = 75, check: bool = True) -> list[str]:
    """Prepare DeepFashion In-shop from ``raw`` into ``out`` (default: verify ``raw`` in place).

    Returns the problems :func:`check_dataset` finds in ``out`` plus any disagreement between
    the split lists and the annotation files (empty: ready to train).
    """
    raw, out, extra = _folders(raw, out, annotations_dir, DEEPFASHION_IMAGES_HELP)
    prepared = _is_prepared(raw, "fasion-resize-annotation-{split}.csv")
    csv_names = [f"fasion-resize-{kind}-{split}.csv" for kind in ("annotation", "pairs")
                 for split in ("train", "test")]
    missing: list[str] = []
    image_root = None if prepared else _find_dir(("img", "img_highres"), raw)
    if not prepared and image_root is None:
        missing.append(f"{raw}: no img/ (or img_highres/) folder found; {DEEPFASHION_IMAGES_HELP}")
    csvs = _find_csvs(csv_names if prepared else ["train.lst", "test.lst"] + csv_names,
                      [extra, raw, out], DEEPFASHION_CSV_HELP, missing)
    _raise_missing(missing)
    out.mkdir(parents=True, exist_ok=True)
    for name in csv_names:
        _flat_csv(csvs[name], out / name, name.split("-")[2])
    problems: list[str] = []
    counts = {}
    if prepared:
        for split in ("train", "test"):
            names = sorted(read_annotations(out / f"fasion-resize-annotation-{split}.csv"))
            counts[split] = len(names)
            (out / split).mkdir(exist_ok=True)
            for name in progress_bar(names, desc=f"DeepFashion {split}", unit="img", disable=not progress):
                if (raw / split / name).is_file():
                    _copy(raw / split / name, out / split / name)
    else:
        index = _inshop_index(image_root, progress)
        for split in ("train", "test"):
            problems += _convert_split(split, csvs[f"{split}.lst"], image_root, index, out, quality, progress)
            counts[split] = len(_read_list(csvs[f"{split}.lst"]))
    log.info("DeepFashion prepared in %s: %d train and %d test images", out, counts["train"], counts["test"])
    if check:
        problems += check_dataset(out, 256, 176, ("train", "test"), progress=progress)
    return problems


def prepare_cli(prepare, description: str, argv=None) -> int:
    """Command line of ``scripts/prepare_{market,deepfashion}.py`` around ``prepare``."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", required=True, type=Path, help="the unzipped download (or a prepared folder)")
    p.add_argument("--out", type=Path, default=None, help="prepared folder to write (default: --raw)")
    p.add_argument("--annotations-dir", type=Path, default=None,
                   help="folder holding the annotation/pair CSVs if not in --raw")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        problems = prepare(args.raw, args.out, args.annotations_dir)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or args.raw
    if print_problems(problems, out):
        return 1
    print(f"{out}: ready")
    return 0
