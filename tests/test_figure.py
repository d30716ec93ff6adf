"""scripts/figure.py: the qualitative comparison figure from toy runs (test.py's layout) and from
released-style 5-panel strips; its grid found back in the PNG and the PDF; the row choices; bad
input named in one line."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from xinggan.config import load_config
from xinggan.data import PairDataset, read_annotations, result_stem


REPO = Path(__file__).resolve().parents[1]
H, W = 64, 32  # the tiny toy data's images


def load_script():
    spec = importlib.util.spec_from_file_location("figure_script", REPO / "scripts" / "figure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stem(name: str) -> str:
    return Path(name).stem


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).copy()


def write_strips(folder: Path, pairs, test_dir: Path, generated) -> None:
    """Released-style strips <from>.jpg___<to>.jpg_vis.jpg: source | pose | target | pose | generated."""
    folder.mkdir(parents=True, exist_ok=True)
    for (source, target), image in zip(pairs, generated):
        pose = np.zeros((H, W, 3), np.uint8)
        strip = np.concatenate([rgb(test_dir / source), pose, rgb(test_dir / target), pose, image], axis=1)
        Image.fromarray(strip).save(folder / f"{stem(source)}.jpg___{stem(target)}.jpg_vis.jpg")


@pytest.fixture(scope="module")
def methods(tiny_data, tmp_path_factory):
    """Three result folders of the tiny toy test pairs: two in test.py's layout
    (``<result_stem>.png``; one inside a run folder's ``images/``), one of released-style strips
    whose generated panel is the target, mirrored."""
    root = tmp_path_factory.mktemp("figure_methods")
    dataset = PairDataset.from_config(load_config(REPO / "configs" / "toy.yaml", [f"data.root={tiny_data}"]).data,
                                      "test")
    test_dir, rng = tiny_data / "test", np.random.default_rng(5)
    for folder in (root / "trained" / "images", root / "untrained"):
        folder.mkdir(parents=True)
        for source, target in dataset.pairs:
            noisy = rgb(test_dir / target).astype(int) + rng.integers(-40, 41, (H, W, 3))
            Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(folder / f"{result_stem(source, target)}.png")
    write_strips(root / "strips", dataset.pairs, test_dir,
                 [np.ascontiguousarray(rgb(test_dir / t)[:, ::-1]) for _, t in dataset.pairs])
    return {"root": root, "data": tiny_data, "pairs": dataset.pairs, "test": test_dir}


def figure_args(m, *extra) -> list[str]:
    return ["--config", str(REPO / "configs" / "toy.yaml"), "--set", f"data.root={m['data']}", *extra]


def locate(canvas: np.ndarray, panel: np.ndarray) -> list[tuple[int, int]]:
    """Every (x, y) at which ``panel`` appears in ``canvas`` exactly."""
    h, w = panel.shape[:2]
    rows = np.lib.stride_tricks.sliding_window_view(canvas, (1, w, 3))[:, :, 0, 0]  # (Y, X, w, 3)
    first = np.all(rows == panel[0], axis=(2, 3))
    found = []
    for y, x in zip(*np.nonzero(first)):
        if y + h <= canvas.shape[0] and np.array_equal(canvas[y:y + h, x:x + w], panel):
            found.append((int(x), int(y)))
    return found


def check_grid(png: np.ndarray, expected: list[list[np.ndarray]]) -> dict:
    """Each expected panel (rows x columns) is in the PNG at its own pixel size, all on one
    regular grid with equal margins; returns the grid's x and y positions."""
    rows, cols = len(expected), len(expected[0])
    spots = [[locate(png, expected[r][c]) for c in range(cols)] for r in range(rows)]
    for r in range(rows):
        for c in range(cols):
            assert expected[r][c].shape == (H, W, 3)
            assert spots[r][c], f"panel row {r} column {c} is not in the figure at its pixel size"
    # a panel may appear more than once (a source shared by two pairs): the grid is where every
    # column has its x and every row its y
    column_x = []
    for c in range(cols):
        common = set.intersection(*({x for x, _ in spots[r][c]} for r in range(rows)))
        assert len(common) == 1, (c, common)
        column_x.append(common.pop())
    row_y = []
    for r in range(rows):
        common = set.intersection(*({y for _, y in spots[r][c]} for c in range(cols)))
        assert len(common) == 1, (r, common)
        row_y.append(common.pop())
    for r in range(rows):
        for c in range(cols):
            assert (column_x[c], row_y[r]) in spots[r][c]
    steps_x = {b - a for a, b in zip(column_x, column_x[1:])}
    steps_y = {b - a for a, b in zip(row_y, row_y[1:])}
    assert len(steps_x) == 1 and steps_x.pop() >= W, column_x
    assert len(steps_y) <= 1 and all(s >= H for s in steps_y), row_y
    left = column_x[0]
    assert png.shape[1] == column_x[-1] + W + left      # the same margin left and right
    assert png.shape[0] == row_y[-1] + H + left         # ... and at the bottom
    header = png[:row_y[0]]
    assert row_y[0] > left + 5
    for x in column_x:  # a label above every column: dark pixels in its header band
        assert (header[:, x:x + W] < 128).any(), f"no label above column x={x}"
    return {"x": column_x, "y": row_y}


def check_pdf(path: Path, png: np.ndarray, labels: list[str]) -> None:
    """The PDF (written uncompressed) has the PNG's geometry, 1 pixel = 1 point: each image is an
    RGB image object of the panel's own pixel size, placed unscaled where the PNG shows the same
    pixels; the labels are text."""
    data = path.read_bytes()
    box = [float(v) for v in re.search(rb"/MediaBox \[ ?([\d. ]+?) ?\]", data).group(1).split()]
    assert box == [0, 0, png.shape[1], png.shape[0]]
    objects = {}
    for name, number in re.findall(rb"/(I\d+) (\d+) 0 R", data):
        start = data.index(b"\n%s 0 obj\n" % number)
        head = data[start:data.index(b"stream\n", start)]
        assert b"/Subtype /Image" in head and b"/ColorSpace /DeviceRGB" in head, head
        w, h = (int(re.search(rb"/%s (\d+)" % key, head).group(1)) for key in (b"Width", b"Height"))
        pixels = data[start + len(head) + len(b"stream\n"):][:w * h * 3]
        objects[name] = np.frombuffer(pixels, np.uint8).reshape(h, w, 3)
    placed = re.findall(rb"q 1 0 0 1 (\S+) (\S+) cm (\d+) 0 0 (-?\d+) -?0 (\d+) cm /(I\d+) Do Q", data)
    assert placed and len(placed) == len(objects)
    for x, y, w, h, _, name in placed:
        x, y, w, h = round(float(x)), round(float(y)), int(w), int(h)
        assert objects[name].shape == (abs(h), w, 3) == (H, W, 3)  # native pixel size
        pixels = objects[name][::-1] if h < 0 else objects[name]  # rows stored bottom-up
        top = png.shape[0] - y - abs(h)
        np.testing.assert_array_equal(pixels, png[top:top + abs(h), x:x + w])
    shown = b"".join(b"".join(re.findall(rb"\((.*?)\)", t)) for t in re.findall(rb"\nBT\n(.*?)\nET\n", data, re.S))
    text = shown.replace(b"\x00", b"").replace(b" ", b"").decode("latin-1")
    assert text == "".join(label.replace(" ", "") for label in labels)
    assert b"/FontFile2" in data  # the font travels with the file


def test_figure_from_toy_runs_and_released_strips(methods, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(matplotlib.rcParams, "pdf.compression", 0)  # a PDF this test can read
    figure = load_script()
    pairs = methods["pairs"]
    chosen = [pairs[4], pairs[0], pairs[2]]  # the rows, in this order
    pair_file = tmp_path / "rows.txt"
    pair_file.write_text("# rows of the figure\n" + "".join(f"{stem(a)}___{stem(b)}\n" for a, b in chosen))
    root = methods["root"]
    out = tmp_path / "fig" / "figure.pdf"
    code = figure.main(figure_args(methods, f"ours={root / 'trained'}", f"untrained={root / 'untrained'}",
                                   f"XingGAN={root / 'strips'}", "--pairs", str(pair_file), "--out", str(out)))
    assert code == 0, capsys.readouterr().err
    png = rgb(out.with_suffix(".png"))

    annotations = read_annotations(methods["data"] / "market-annotation-test.csv")
    from xinggan.visualize import draw_skeleton

    expected = []
    for source, target in chosen:
        name = f"{stem(source)}___{stem(target)}.png"
        strip = rgb(root / "strips" / f"{stem(source)}.jpg___{stem(target)}.jpg_vis.jpg")
        expected.append([rgb(methods["test"] / source), draw_skeleton(annotations[target], H, W),
                         rgb(methods["test"] / target), rgb(root / "trained" / "images" / name),
                         rgb(root / "untrained" / name), strip[:, 4 * W:5 * W]])  # panel 4 of 5
    grid = check_grid(png, expected)
    assert len(grid["x"]) == 6 and len(grid["y"]) == 3
    check_pdf(out, png, ["source", "target pose", "target", "ours", "untrained", "XingGAN"])
    assert "3 rows x 6 columns of 64x32 images" in capsys.readouterr().out


def test_spread_picks_the_pairs_where_the_methods_disagree(methods, tmp_path):
    """'copy' reproduces every target (but one pixel); 'strips' reproduces all but two, which are noise: those two
    are the pairs whose SSIM differs most between the methods."""
    from xinggan.figure import read_methods, select_pairs
    from xinggan.visualize import draw_skeleton

    figure = load_script()
    pairs, test_dir = methods["pairs"], methods["test"]
    noisy = {pairs[1], pairs[3]}
    rng = np.random.default_rng(0)
    copy = tmp_path / "copy"
    copy.mkdir()
    generated = []
    copies = {}
    for source, target in pairs:
        image = rgb(test_dir / target)
        image[0, 0] = 255 - image[0, 0]  # one pixel off: its column is not the target column
        copies[(source, target)] = image
        Image.fromarray(image).save(copy / f"{stem(source)}___{stem(target)}.png")
        generated.append(rng.integers(0, 256, (H, W, 3), dtype=np.uint8) if (source, target) in noisy
                         else rgb(test_dir / target))
    write_strips(tmp_path / "strips", pairs, test_dir, generated)
    cfg = load_config(REPO / "configs" / "toy.yaml", [f"data.root={methods['data']}"])
    dataset = PairDataset.from_config(cfg.data, "test")
    ms = read_methods([f"copy={copy}", f"strips={tmp_path / 'strips'}"], dataset.pairs, W)
    chosen = select_pairs(dataset, ms, 2, "spread", protocol=cfg.eval.protocol)
    assert set(chosen) == noisy

    out = tmp_path / "spread.png"
    assert figure.main(figure_args(methods, f"copy={copy}", f"strips={tmp_path / 'strips'}", "--select", "spread",
                                   "--rows", "2", "--out", str(out))) == 0
    annotations = read_annotations(methods["data"] / "market-annotation-test.csv")
    strips = tmp_path / "strips"
    check_grid(rgb(out), [[rgb(test_dir / s), draw_skeleton(annotations[t], H, W), rgb(test_dir / t),
                           copies[(s, t)], rgb(strips / f"{stem(s)}.jpg___{stem(t)}.jpg_vis.jpg")[:, 4 * W:]]
                          for s, t in chosen])
    assert out.with_suffix(".pdf").is_file()


def test_random_rows_are_seeded(methods, tmp_path):
    from xinggan.figure import read_methods, select_pairs

    cfg = load_config(REPO / "configs" / "toy.yaml", [f"data.root={methods['data']}"])
    dataset = PairDataset.from_config(cfg.data, "test")
    ms = read_methods([f"ours={methods['root'] / 'trained'}", f"XingGAN={methods['root'] / 'strips'}"],
                      dataset.pairs, W)
    first = select_pairs(dataset, ms, 3, "random", seed=7)
    assert first == select_pairs(dataset, ms, 3, "random", seed=7)
    assert len(first) == 3 and len(set(first)) == 3 and set(first) <= set(dataset.pairs)
    seeds = {tuple(select_pairs(dataset, ms, 3, "random", seed=s)) for s in range(8)}
    assert len(seeds) > 1  # the seed matters
    assert select_pairs(dataset, ms, 2, "first") == dataset.pairs[:2]


def test_a_pair_missing_from_one_method_is_named(methods, tmp_path, capsys):
    import shutil

    figure = load_script()
    strips = tmp_path / "strips"
    shutil.copytree(methods["root"] / "strips", strips)
    source, target = methods["pairs"][2]
    (strips / f"{stem(source)}.jpg___{stem(target)}.jpg_vis.jpg").unlink()
    rows = tmp_path / "rows.txt"
    rows.write_text(f"{stem(source)}___{stem(target)}\n")
    code = figure.main(figure_args(methods, f"ours={methods['root'] / 'trained'}", f"XingGAN={strips}",
                                   "--pairs", str(rows), "--out", str(tmp_path / "f.pdf")))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "XingGAN" in err[0] and f"{stem(source)}___{stem(target)}" in err[0] and f"{rows}:1" in err[0]
    assert not (tmp_path / "f.pdf").exists()


@pytest.mark.parametrize("case", ["not a pair", "unknown pair", "bad out", "no folder", "bad config"])
def test_bad_input_is_one_line(methods, tmp_path, capsys, case):
    figure = load_script()
    rows = tmp_path / "rows.txt"
    ours = f"ours={methods['root'] / 'trained'}"
    args = {"not a pair": [ours, "--pairs", str(rows)],
            "unknown pair": [ours, "--pairs", str(rows)],
            "bad out": [ours],
            "no folder": [f"ours={tmp_path / 'nothing'}"],
            "bad config": [ours, "--set", "data.heigth=64"]}[case]
    rows.write_text("just_one_name\n" if case == "not a pair" else "a___b\n")
    out = str(tmp_path / ("f.jpg" if case == "bad out" else "f.pdf"))
    code = figure.main(figure_args(methods, *args, "--out", out))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    expect = {"not a pair": f"{rows}:1", "unknown pair": "a___b", "bad out": ".pdf or .png",
              "no folder": "nothing", "bad config": "data.heigth"}[case]
    assert expect in err[0], err
    assert not (tmp_path / "f.pdf").exists()
