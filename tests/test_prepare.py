"""Preparation of Market-1501 and DeepFashion from small synthetic raw downloads."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from xinggan.data import (DataError, build_pairs, deepfashion_flat_name, read_annotations, read_pairs,
                          write_pairs)
from xinggan.prep.prepare import prepare_deepfashion, prepare_market
from xinggan.prep.toy import make_toy_dataset

from photo_helpers import load_script


# --------------------------------------------------------------------------------------------
# Market-1501
# --------------------------------------------------------------------------------------------


@pytest.fixture
def market_raw(tmp_path):
    """A Market-1501-like download: the unzipped archive folder plus a separate CSV folder."""
    toy = tmp_path / "toy"
    make_toy_dataset(toy, seed=1, identities=2, test_identities=1, poses=4, test_pairs=5)
    raw = tmp_path / "raw"
    archive = raw / "Market-1501-v15.09.15"
    archive.mkdir(parents=True)
    shutil.copytree(toy / "train", archive / "bounding_box_train")
    shutil.copytree(toy / "test", archive / "bounding_box_test")
    (archive / "bounding_box_train" / "Thumbs.db").write_bytes(b"\0")
    Image.new("RGB", (64, 128)).save(archive / "bounding_box_test" / "9999_c1s1_000001_00.jpg")
    (archive / "query").mkdir()
    csvs = tmp_path / "csv"
    csvs.mkdir()
    for name in ("market-annotation-train.csv", "market-annotation-test.csv", "market-pairs-test.csv"):
        shutil.copyfile(toy / name, csvs / name)
    return raw, csvs, toy


def test_prepare_market(market_raw, tmp_path, caplog):
    raw, csvs, toy = market_raw
    out = tmp_path / "market"
    with caplog.at_level(logging.INFO):
        assert prepare_market(raw, out, csvs, progress=False) == []
    assert "rebuilt" in caplog.text and "1 images have no annotation" in caplog.text
    for split in ("train", "test"):
        names = sorted(read_annotations(toy / f"market-annotation-{split}.csv"))
        assert sorted(p.name for p in (out / split).iterdir()) == names
        for n in names:
            assert (out / split / n).read_bytes() == (toy / split / n).read_bytes()
        assert ((out / f"market-annotation-{split}.csv").read_bytes()
                == (toy / f"market-annotation-{split}.csv").read_bytes())
    assert read_pairs(out / "market-pairs-test.csv") == read_pairs(toy / "market-pairs-test.csv")
    assert read_pairs(out / "market-pairs-train.csv") == build_pairs(
        read_annotations(toy / "market-annotation-train.csv"))

    # A prepared folder is accepted as is: verified, nothing rewritten.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert prepare_market(out, progress=False) == []
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_prepare_market_keeps_given_train_pairs(market_raw, tmp_path):
    raw, csvs, toy = market_raw
    given = read_pairs(toy / "market-pairs-train.csv")[:3]
    write_pairs(csvs / "market-pairs-train.csv", given)
    assert prepare_market(raw, tmp_path / "out", csvs, progress=False) == []
    assert read_pairs(tmp_path / "out" / "market-pairs-train.csv") == given


def test_prepare_market_errors(market_raw, tmp_path, capsys):
    raw, csvs, _ = market_raw
    with pytest.raises(DataError) as info:
        prepare_market(raw, tmp_path / "out", None, progress=False)
    msg = str(info.value)
    assert "market-annotation-train.csv" in msg and "market-pairs-test.csv" in msg
    assert "Pose-Transfer" in msg

    victim = sorted((raw / "Market-1501-v15.09.15" / "bounding_box_test").glob("0003_*"))[1]
    victim.unlink()
    with pytest.raises(DataError, match="1 images of .*market-annotation-test.csv are missing") as info:
        prepare_market(raw, tmp_path / "out", csvs, progress=False)
    assert victim.name in str(info.value) and "Market-1501" in str(info.value)

    with pytest.raises(DataError, match="bounding_box_train"):
        prepare_market(tmp_path / "csv", tmp_path / "out2", csvs, progress=False)

    main = load_script("prepare_market").main
    assert main(["--raw", str(raw), "--out", str(tmp_path / "out3"), "--annotations-dir", str(csvs)]) == 2
    assert victim.name in capsys.readouterr().err


def test_prepare_market_script(market_raw, tmp_path, capsys):
    raw, csvs, _ = market_raw
    main = load_script("prepare_market").main
    out = tmp_path / "out"
    assert main(["--raw", str(raw), "--out", str(out), "--annotations-dir", str(csvs)]) == 0
    assert "ready" in capsys.readouterr().out
    (out / "test" / sorted(p.name for p in (out / "test").iterdir())[0]).write_bytes(b"not a jpeg")
    assert main(["--raw", str(out)]) == 1
    assert "unreadable image" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# DeepFashion In-shop
# --------------------------------------------------------------------------------------------

TRAIN_RAW = ["WOMEN/Skirts/id_00000629/04_3_back.jpg", "WOMEN/Skirts/id_00000629/04_1_front.jpg",
             "MEN/Tees_Tanks/id_00007301/04_7_additional.jpg", "MEN/Tees_Tanks/id_00007301/04_2_side.jpg"]
TEST_RAW = ["WOMEN/Blouses_Shirts/id_00003372/03_3_back.jpg", "WOMEN/Blouses_Shirts/id_00003372/03_2_side.jpg"]


def _gradient(size: int) -> Image.Image:
    """Red = column index and green = row index of the 256 x 256 frame (scaled for other sizes)."""
    ramp = np.arange(size) * 256 / size
    img = np.zeros((size, size, 3), dtype=np.uint8)
    img[..., 0] = ramp[None, :]
    img[..., 1] = ramp[:, None]
    img[..., 2] = 128
    return Image.fromarray(img)


def _step_network_csv(path, names, rng):
    """The re-formatted public copy: raw paths, trailing commas in the header, no spaces."""
    rows = ["name:keypoints_y:keypoints_x" + "," * 34]
    kps = {}
    for n in names:
        kp = rng.integers(-31, 206, size=(18, 2))
        kp[3] = -1
        kps[n] = kp
        rows.append(f"fashion/{n}:[{','.join(map(str, kp[:, 0]))}]:[{','.join(map(str, kp[:, 1]))}]")
    path.write_text("\n".join(rows) + "\n")
    return kps


@pytest.fixture
def fashion_raw(tmp_path):
    raw = tmp_path / "DeepFashion"
    for i, rel in enumerate(TRAIN_RAW + TEST_RAW):
        path = raw / "img" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        _gradient(512 if i == 1 else 256).save(path, quality=98)
    flat = lambda names: [deepfashion_flat_name("img/" + n) for n in names]  # noqa: E731
    (raw / "train.lst").write_text("\n".join(flat(TRAIN_RAW)) + "\n")
    (raw / "test.lst").write_text("\n".join(flat(TEST_RAW)) + "\n")
    rng = np.random.default_rng(0)
    kps = {}
    for split, names in (("train", TRAIN_RAW), ("test", TEST_RAW)):
        kps.update(_step_network_csv(raw / f"fasion-resize-annotation-{split}.csv", names, rng))
        write_pairs(raw / f"fasion-resize-pairs-{split}.csv",
                    [(f"fashion/{names[0]}", f"fashion/{names[1]}"), (f"fashion/{names[1]}", f"fashion/{names[0]}")])
    return raw, kps


def test_prepare_deepfashion(fashion_raw, tmp_path):
    raw, kps = fashion_raw
    out = tmp_path / "fashion"
    assert prepare_deepfashion(raw, out, progress=False) == []
    for split, names in (("train", TRAIN_RAW), ("test", TEST_RAW)):
        flat = [deepfashion_flat_name("img/" + n) for n in names]
        assert sorted(p.name for p in (out / split).iterdir()) == sorted(flat)
        annotations = read_annotations(out / f"fasion-resize-annotation-{split}.csv")
        assert list(annotations) == flat
        for raw_name, flat_name in zip(names, flat):
            np.testing.assert_array_equal(annotations[flat_name], kps[raw_name])
        assert read_pairs(out / f"fasion-resize-pairs-{split}.csv")[0] == (flat[0], flat[1])
        for name in flat:
            img = np.asarray(Image.open(out / split / name).convert("RGB"), dtype=float)
            assert img.shape == (256, 176, 3)
            # columns 40..215 of the 256-wide frame, all rows
            assert abs(img[:, 0, 0].mean() - 40) < 6 and abs(img[:, -1, 0].mean() - 215) < 6
            assert abs(img[0, :, 1].mean() - 0) < 6 and abs(img[-1, :, 1].mean() - 255) < 6

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert prepare_deepfashion(out, progress=False) == []
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_prepare_deepfashion_errors(fashion_raw, tmp_path, capsys):
    raw, _ = fashion_raw
    (raw / "train.lst").rename(tmp_path / "train.lst")
    with pytest.raises(DataError, match="missing train.lst") as info:
        prepare_deepfashion(raw, tmp_path / "out", progress=False)
    assert "Pose-Transfer" in str(info.value)
    (tmp_path / "train.lst").rename(raw / "train.lst")

    (raw / "img" / TEST_RAW[1]).unlink()
    with pytest.raises(DataError, match="1 images of .*test.lst are missing") as info:
        prepare_deepfashion(raw, tmp_path / "out", progress=False)
    assert deepfashion_flat_name(TEST_RAW[1]) in str(info.value) and "DeepFashion" in str(info.value)
    main = load_script("prepare_deepfashion").main
    assert main(["--raw", str(raw), "--out", str(tmp_path / "out2")]) == 2
    assert "password" in capsys.readouterr().err


def test_prepare_deepfashion_list_mismatch(fashion_raw, tmp_path, capsys):
    raw, _ = fashion_raw
    extra = "fashionWOMENSkirtsid0000062904_1front.jpg"
    (raw / "test.lst").write_text((raw / "test.lst").read_text() + extra + "\n")
    problems = prepare_deepfashion(raw, tmp_path / "out", progress=False)
    assert len(problems) == 1 and "only in the list" in problems[0] and extra in problems[0]
    main = load_script("prepare_deepfashion").main
    assert main(["--raw", str(raw), "--out", str(tmp_path / "out")]) == 1
