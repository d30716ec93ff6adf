"""Data layer: annotation/pair files (real ones when ../shared/data exists), heatmaps, the paired
dataset, the iteration sampler and the dataset check."""
from __future__ import annotations

import importlib.util
import json
import math
import shutil
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms

from xinggan.data import (DataError, IterationSampler, PairDataset, build_pairs, deepfashion_flat_name,
                          model_inputs, official_epoch_iterations, pose_heatmaps, read_annotations,
                          read_pairs, write_annotations, write_pairs)
from xinggan.data.dataset import image_tensor
from xinggan.prep.check import check_dataset
from xinggan.prep.toy import make_toy_dataset



def _load_script(path):
    """Import a script of scripts/ as a module (runs its main() in-process: no second torch import)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _copy_toy(toy_root, dst):
    shutil.copytree(toy_root, dst)
    return dst


def _reference_parse(path):
    """Independent parser: split on ':' and json-decode the lists."""
    out = {}
    with open(path) as f:
        next(f)
        for line in f:
            name, ys, xs = line.rstrip("\n").split(":")
            out[name.strip()] = np.stack([json.loads(ys), json.loads(xs)], axis=1)
    return out


# --------------------------------------------------------------------------------------------
# Real annotation and pair files
# --------------------------------------------------------------------------------------------


def test_market_files(shared_data):
    market = shared_data / "market"
    test_ann = read_annotations(market / "market-annotation-test.csv")
    train_ann = read_annotations(market / "market-annotation-train.csv")
    assert len(train_ann) == 12_936 and len(test_ann) == 19_732

    reference = _reference_parse(market / "market-annotation-test.csv")
    assert list(reference) == list(test_ann)
    table = np.stack(list(test_ann.values()))
    assert table.shape == (19_732, 18, 2) and table.dtype.kind == "i"
    np.testing.assert_array_equal(table, np.stack(list(reference.values())))
    present = table[..., 0] != -1
    assert np.array_equal(present, table[..., 1] != -1)  # y and x missing together
    assert table[..., 0][present].min() >= 0 and table[..., 0].max() <= 127
    assert table[..., 1][present].min() >= 0 and table[..., 1].max() <= 63

    pairs = read_pairs(market / "market-pairs-test.csv")
    assert len(pairs) == 12_000
    assert all(a in test_ann and b in test_ann and a.split("_")[0] == b.split("_")[0] for a, b in pairs)


def test_market_train_pairs_rebuilt(shared_data):
    annotations = read_annotations(shared_data / "market" / "market-annotation-train.csv")
    pairs = build_pairs(annotations)
    assert len(pairs) == 263_632
    assert pairs == sorted(pairs) and len(set(pairs)) == len(pairs)
    assert all(a != b and a.split("_")[0] == b.split("_")[0] for a, b in pairs[:: 997])
    # Usable images of the PATN train annotations (both shoulders and hips, no -1/0000 prefix): 12,116 of 745 persons.
    usable = [n for n, kp in annotations.items()
              if not n.startswith(("-1", "0000")) and (kp[[2, 5, 8, 11]] >= 0).all()]
    assert len(usable) == 12_116 and len({n.split("_")[0] for n in usable}) == 745
    assert {a for a, _ in pairs} <= set(usable)


def test_deepfashion_files(shared_data):
    df = shared_data / "deepfashion"
    annotations = read_annotations(df / "fasion-resize-annotation-test.csv")
    assert len(annotations) == 4_038
    test_list = (df / "test.lst").read_text().split()
    flat = [deepfashion_flat_name(n) for n in annotations]
    assert sorted(flat) == sorted(test_list)
    pairs = read_pairs(df / "fasion-resize-pairs-test.csv")
    assert len(pairs) == 8_570
    names = set(test_list)
    assert all(deepfashion_flat_name(a) in names and deepfashion_flat_name(b) in names for a, b in pairs)
    xs = np.stack(list(annotations.values()))[..., 1]
    assert xs.min() == -31 and xs.max() == 205  # out-of-frame x kept (docs/data_and_metrics.md)
    train_list = (df / "train.lst").read_text().split()
    assert len(train_list) == 48_674 and not names & set(train_list)

    # The pristine PATN spelling (flat names, spaces) of the sample agrees with the re-formatted copy.
    sample = read_annotations(shared_data / "samples" / "deepfashion" / "test-annotation-test.csv")
    name = "fashionMENSweatshirts_Hoodiesid0000600801_4full.jpg"
    assert len(sample) == 3 and name in names
    by_flat = dict(zip(flat, annotations.values()))
    np.testing.assert_array_equal(sample[name], by_flat[name])


def test_posegan_split_files(shared_data):
    split = shared_data / "deepfashion_posegan_split"
    assert len(read_annotations(split / "fasion-annotation-test.csv")) == 4_061
    assert len(read_pairs(split / "fasion-pairs-test.csv")) == 8_670


# --------------------------------------------------------------------------------------------
# Parsing rules and errors
# --------------------------------------------------------------------------------------------

YS = list(range(10, 28))
XS = [-1] + list(range(1, 18))


def _row(name, ys=YS, xs=XS, spaced=True):
    sep = ", " if spaced else ","
    return f"{name}: [{sep.join(map(str, ys))}]: [{sep.join(map(str, xs))}]"


def test_header_and_list_spellings(tmp_path):
    a = tmp_path / "a.csv"
    a.write_text("name:keypoints_y:keypoints_x\n" + _row("x.jpg") + "\n")
    b = tmp_path / "b.csv"
    b.write_text("name:keypoints_y:keypoints_x" + "," * 34 + "\r\n"
                 + _row("x.jpg", spaced=False).replace(": ", ":") + "\r\n\n")
    for path in (a, b):
        kp = read_annotations(path)["x.jpg"]
        assert kp.shape == (18, 2)
        assert kp[:, 0].tolist() == YS and kp[:, 1].tolist() == XS


@pytest.mark.parametrize("row, message", [
    ("x.jpg: [1, 2]: " + str(XS), "keypoints_y has 2 values"),
    (_row("x.jpg") + ": [1]", "3 ':'-separated fields"),
    (_row("x.jpg").replace("[10, 11,", "[10.5, 11,"), "non-integer value '10.5'"),
    (_row("x.jpg").replace("[10,", "[a,"), "non-integer value 'a'"),
    ("x.jpg: 1, 2: 3", "bracketed list"),
    (": " + str(YS) + ": " + str(XS), "empty image name"),
])
def test_malformed_annotation_rows(tmp_path, row, message):
    path = tmp_path / "ann.csv"
    path.write_text("name:keypoints_y:keypoints_x\n" + _row("ok.jpg") + "\n" + row + "\n")
    with pytest.raises(DataError, match="line 3") as info:
        read_annotations(path)
    assert str(path) in str(info.value) and message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_duplicate_and_header_errors(tmp_path):
    path = tmp_path / "ann.csv"
    path.write_text("name:keypoints_y:keypoints_x\n" + _row("a.jpg") + "\n\n" + _row("a.jpg") + "\n")
    with pytest.raises(DataError, match=r"line 4: duplicate image name 'a.jpg' \(first given on line 2\)"):
        read_annotations(path)
    path.write_text("name,keypoints\n" + _row("a.jpg") + "\n")
    with pytest.raises(DataError, match="line 1: expected the header"):
        read_annotations(path)
    with pytest.raises(DataError, match="file not found"):
        read_annotations(tmp_path / "absent.csv")


def test_pairs_errors(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("from,to\na.jpg,b.jpg\n a.jpg , c.jpg \n")
    assert read_pairs(path) == [("a.jpg", "b.jpg"), ("a.jpg", "c.jpg")]
    path.write_text("from,to\na.jpg,b.jpg\na.jpg,b.jpg,c.jpg\n")
    with pytest.raises(DataError, match="line 3") as info:
        read_pairs(path)
    assert str(path) in str(info.value)
    path.write_text("from,to\n,b.jpg\n")
    with pytest.raises(DataError, match="line 2"):
        read_pairs(path)
    path.write_text("source,target\na.jpg,b.jpg\n")
    with pytest.raises(DataError, match="line 1"):
        read_pairs(path)


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    annotations = {f"{i:04d}_c1s1_{i:06d}_00.jpg": rng.integers(-1, 100, size=(18, 2)) for i in range(5)}
    write_annotations(tmp_path / "a.csv", annotations)
    back = read_annotations(tmp_path / "a.csv")
    assert list(back) == list(annotations)
    for k in annotations:
        np.testing.assert_array_equal(back[k], annotations[k])
    pairs = [("a.jpg", "b.jpg"), ("b.jpg", "a.jpg")]
    write_pairs(tmp_path / "p.csv", pairs)
    assert read_pairs(tmp_path / "p.csv") == pairs


def test_build_pairs_rule():
    full = np.arange(36).reshape(18, 2)
    no_hip = full.copy()
    no_hip[11] = -1
    no_wrist = full.copy()
    no_wrist[4] = -1
    annotations = {
        "0002_c1_a.jpg": full, "0002_c2_b.jpg": no_wrist, "0002_c3_c.jpg": no_hip,
        "0001_c1_a.jpg": full, "0001_c1_b.jpg": full, "0001_c1_c.jpg": full,
        "0003_c1_a.jpg": full,  # alone: no pair
        "-1_c1_a.jpg": full, "-1_c1_b.jpg": full, "0000_c1_a.jpg": full, "0000_c1_b.jpg": full,
    }
    expected = [
        ("0001_c1_a.jpg", "0001_c1_b.jpg"), ("0001_c1_a.jpg", "0001_c1_c.jpg"),
        ("0001_c1_b.jpg", "0001_c1_a.jpg"), ("0001_c1_b.jpg", "0001_c1_c.jpg"),
        ("0001_c1_c.jpg", "0001_c1_a.jpg"), ("0001_c1_c.jpg", "0001_c1_b.jpg"),
        ("0002_c1_a.jpg", "0002_c2_b.jpg"), ("0002_c2_b.jpg", "0002_c1_a.jpg"),
    ]
    assert build_pairs(annotations) == expected
    assert build_pairs(dict(reversed(list(annotations.items())))) == expected


def test_deepfashion_flat_names():
    assert (deepfashion_flat_name("fashion/WOMEN/Blouses_Shirts/id_00003372/03_3_back.jpg")
            == "fashionWOMENBlouses_Shirtsid0000337203_3back.jpg")
    assert (deepfashion_flat_name("img/WOMEN/Skirts/id_00000629/04_3_back.jpg")
            == "fashionWOMENSkirtsid0000062904_3back.jpg")
    assert (deepfashion_flat_name("data/In-shop/img_highres/MEN/Tees_Tanks/id_00007301/04_7_additional.jpg")
            == "fashionMENTees_Tanksid0000730104_7additional.jpg")
    flat = "fashionMENPantsid0000161101_1front.jpg"
    assert deepfashion_flat_name(flat) == flat
    for bad in ("WOMEN/Skirts/04_3_back.jpg", "img/WOMEN/Skirts/00000629/04_3_back.jpg",
                "img/WOMEN/Skirts/id_00000629/04back.jpg"):
        with pytest.raises(DataError):
            deepfashion_flat_name(bad)


# --------------------------------------------------------------------------------------------
# Pose heatmaps
# --------------------------------------------------------------------------------------------


def _naive_heatmaps(kp, h, w, sigma):
    """Direct 2-D evaluation of the formula, one joint at a time."""
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.zeros((len(kp), h, w))
    for k, (y, x) in enumerate(kp):
        if y == -1 or x == -1:
            continue
        out[k] = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma ** 2))
    return out


def test_heatmap_peak_offset_and_missing():
    kp = np.full((18, 2), -1)
    kp[0] = (40, 20)
    kp[3] = (0, 0)
    kp[5] = (-1, 10)  # y missing only
    kp[6] = (30, -1)  # x missing only
    maps = pose_heatmaps(kp, 128, 64)
    assert maps.shape == (18, 128, 64) and maps.dtype == torch.float32
    assert maps[0, 40, 20].item() == 1.0 and maps[0].max().item() == 1.0
    assert maps[3, 0, 0].item() == 1.0
    expected = math.exp(-((43 - 40) ** 2 + (16 - 20) ** 2) / (2 * 6.0 ** 2))
    assert maps[0, 43, 16].item() == pytest.approx(expected, rel=1e-6)
    expected_s2 = math.exp(-(2 ** 2 + 1 ** 2) / (2 * 2.0 ** 2))
    assert pose_heatmaps(kp, 128, 64, sigma=2.0)[0, 42, 21].item() == pytest.approx(expected_s2, rel=1e-6)
    for k in [1, 2, 4, 5, 6] + list(range(7, 18)):
        assert maps[k].abs().max().item() == 0.0


def test_heatmap_out_of_frame_joint():
    kp = np.full((18, 2), -1)
    kp[0] = (100, -31)  # DeepFashion extremes
    kp[1] = (100, 205)
    kp[2] = (10, -1000)
    maps = pose_heatmaps(kp, 256, 176)
    for k, col in ((0, 0), (1, 175)):
        m = maps[k]
        assert 0 < m.max().item() < 1  # partial Gaussian, no peak inside
        assert m[:, col].max().item() == m.max().item()
        assert m[100, col].item() == pytest.approx(math.exp(-(31 ** 2 if k == 0 else 30 ** 2) / 72), rel=1e-4)
    assert maps[2].max().item() == 0.0


def test_heatmaps_match_direct_formula():
    rng = np.random.default_rng(1)
    kp = np.stack([rng.integers(-20, 276, 18), rng.integers(-40, 216, 18)], axis=1)
    kp[[4, 9]] = -1
    ours = pose_heatmaps(torch.from_numpy(kp), 256, 176).double().numpy()
    np.testing.assert_allclose(ours, _naive_heatmaps(kp, 256, 176, 6.0), atol=1e-6)
    with pytest.raises(ValueError):
        pose_heatmaps(np.zeros((18, 3)), 8, 8)


def _numpy_heatmaps(kp, h, w, sigma):
    """The loader's former CPU maps: float64 numpy profiles, their product in float32."""
    kp = np.asarray(kp, dtype=np.float64)
    rows = np.exp(-((np.arange(h)[None, :] - kp[:, :1]) ** 2) / (2.0 * sigma ** 2))
    cols = np.exp(-((np.arange(w)[None, :] - kp[:, 1:]) ** 2) / (2.0 * sigma ** 2))
    rows[(kp[:, 0] == -1) | (kp[:, 1] == -1)] = 0.0
    rows, cols = torch.from_numpy(rows.astype(np.float32)), torch.from_numpy(cols.astype(np.float32))
    return rows[:, :, None] * cols[:, None, :]


# The released loader's image transform, the reference of the images' normalisation.
_RELEASED_NORMALISE = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])


def _random_batch(rng, batch, h, w):
    """uint8 images and keypoints with missing joints (one coordinate or both) and joints
    outside the frame, as a collated PairDataset batch."""
    out = {"source_name": [f"a{i}.jpg" for i in range(batch)],
           "target_name": [f"b{i}.jpg" for i in range(batch)]}
    for side in ("source", "target"):
        kp = np.stack([rng.integers(-40, h + 40, (batch, 18)), rng.integers(-40, w + 40, (batch, 18))], -1)
        kp[rng.random((batch, 18)) < 0.2] = -1
        kp[:, 3, rng.integers(2)] = -1
        out[f"{side}_keypoints"] = torch.from_numpy(kp.astype(np.float32))
        out[f"{side}_image"] = torch.from_numpy(rng.integers(0, 256, (batch, 3, h, w), dtype=np.uint8))
    return out


@pytest.mark.parametrize("h, w, sigma", [(128, 64, 6.0), (256, 176, 6.0), (128, 64, 2.5)])
def test_model_inputs_equal_cpu_heatmaps_and_released_normalisation(h, w, sigma):
    rng = np.random.default_rng(h + w)
    batch = _random_batch(rng, 4, h, w)
    inputs = model_inputs(batch, "cpu", sigma, memory_format=torch.channels_last)
    assert set(inputs) == {"source_image", "target_image", "source_pose", "target_pose",
                           "source_name", "target_name"}
    assert inputs["source_name"] is batch["source_name"]
    for side in ("source", "target"):
        pose = inputs[f"{side}_pose"]
        assert pose.shape == (4, 18, h, w) and pose.dtype == torch.float32
        assert pose.is_contiguous(memory_format=torch.channels_last)
        keypoints = batch[f"{side}_keypoints"].numpy()
        expected = torch.stack([_numpy_heatmaps(k, h, w, sigma) for k in keypoints])
        torch.testing.assert_close(pose, expected, rtol=0, atol=1e-6)
        assert torch.equal(pose, expected)  # same float64 profiles, same float32 product
        pixels = batch[f"{side}_image"]
        expected = torch.stack([_RELEASED_NORMALISE(Image.fromarray(p.permute(1, 2, 0).numpy())) for p in pixels])
        assert torch.equal(inputs[f"{side}_image"], expected)
        assert torch.equal(inputs[f"{side}_image"][1], image_tensor(pixels[1].permute(1, 2, 0).numpy()))


def test_model_inputs_read_nothing_back():
    """On the meta device any host read (item, tolist, bool, numpy, cpu) would raise."""
    batch = _random_batch(np.random.default_rng(0), 2, 16, 8)
    inputs = model_inputs(batch, "meta", 6.0, memory_format=torch.preserve_format)
    assert inputs["target_pose"].shape == (2, 18, 16, 8) and inputs["target_image"].dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_model_inputs_on_cuda_equal_cpu():
    batch = _random_batch(np.random.default_rng(3), 3, 256, 176)
    on_cpu = model_inputs(batch, "cpu", 6.0)
    pinned = {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}
    on_gpu = model_inputs(pinned, "cuda", 6.0)
    for key in ("source_image", "target_image"):
        assert torch.equal(on_gpu[key].cpu(), on_cpu[key])
    for key in ("source_pose", "target_pose"):
        torch.testing.assert_close(on_gpu[key].cpu(), on_cpu[key], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------
# PairDataset
# --------------------------------------------------------------------------------------------


def _item_bytes(item):
    return sum(v.nbytes for v in item.values() if torch.is_tensor(v))


def test_dataset_items(toy_root):
    ds = PairDataset(toy_root, "test", 128, 64)
    assert ds.layout == "market" and len(ds) == len(read_pairs(toy_root / "market-pairs-test.csv"))
    item = ds[3]
    a, b = ds.pairs[3]
    assert (item["source_name"], item["target_name"]) == (a, b)
    for key, name in (("source_image", a), ("target_image", b)):
        assert item[key].shape == (3, 128, 64) and item[key].dtype == torch.uint8
        raw = np.array(Image.open(toy_root / "test" / name).convert("RGB"))
        assert torch.equal(item[key], torch.from_numpy(raw).permute(2, 0, 1))
    for key, name in (("source_keypoints", a), ("target_keypoints", b)):
        assert item[key].shape == (18, 2) and item[key].dtype == torch.float32
        np.testing.assert_array_equal(item[key].numpy(), ds.annotations[name])
    one = model_inputs(item, "cpu", ds.sigma)  # an item keeps its own shapes
    assert one["source_pose"].shape == (18, 128, 64) and one["target_image"].shape == (3, 128, 64)
    raw = np.asarray(Image.open(toy_root / "test" / a).convert("RGB"), dtype=np.float64)
    np.testing.assert_allclose(one["source_image"].permute(1, 2, 0).double().numpy(), raw / 127.5 - 1,
                               atol=1e-6)

    batch = next(iter(DataLoader(ds, batch_size=4)))
    inputs = model_inputs(batch, "cpu", ds.sigma)
    assert inputs["source_pose"].shape == (4, 18, 128, 64)
    assert inputs["target_name"] == [b for _, b in ds.pairs[:4]]
    for i, (a, b) in enumerate(ds.pairs[:4]):
        torch.testing.assert_close(inputs["target_pose"][i], _numpy_heatmaps(ds.annotations[b], 128, 64, 6.0),
                                   rtol=0, atol=1e-6)
        assert torch.equal(inputs["source_image"][i], model_inputs(ds[i], "cpu", ds.sigma)["source_image"])


def test_dataset_from_config_and_rebuilt_pairs(toy_root, tmp_path, caplog):
    cfg = SimpleNamespace(root=str(toy_root), height=128, width=64, heatmap_sigma=3.0,
                          train_annotations="", test_annotations="market-annotation-test.csv",
                          train_pairs="", test_pairs="market-pairs-test.csv")
    train = PairDataset.from_config(cfg, "train")
    assert train.sigma == 3.0 and train.pairs == read_pairs(toy_root / "market-pairs-train.csv")
    assert len(PairDataset.from_config(cfg, "test")) == len(read_pairs(toy_root / "market-pairs-test.csv"))

    root = _copy_toy(toy_root, tmp_path / "toy")
    (root / "market-pairs-train.csv").unlink()
    with caplog.at_level("INFO"):
        rebuilt = PairDataset(root, "train", 128, 64)
    assert rebuilt.pairs == build_pairs(read_annotations(root / "market-annotation-train.csv"))
    assert "rebuilt" in caplog.text
    with pytest.raises(DataError, match="pairs file not found"):
        PairDataset(root, "train", 128, 64, pairs_file="market-pairs-train.csv")


def test_dataset_reports_all_missing(toy_root, tmp_path):
    root = _copy_toy(toy_root, tmp_path / "toy")
    pairs = read_pairs(root / "market-pairs-test.csv")
    names = sorted({n for p in pairs for n in p})
    for n in names[:7]:
        (root / "test" / n).unlink()
    write_pairs(root / "market-pairs-test.csv", pairs + [("9999_nobody.jpg", names[-1])])
    with pytest.raises(DataError) as info:
        PairDataset(root, "test", 128, 64)
    msg = str(info.value)
    assert "8 images of" in msg and "and 3 more" in msg and str(root / "test" / names[0]) in msg
    assert "1 image names" in msg and "9999_nobody.jpg" in msg and "market-annotation-test.csv" in msg
    with pytest.raises(DataError, match="no annotation file"):
        PairDataset(tmp_path, "test", 128, 64)


def test_dataset_bad_images(toy_root, tmp_path):
    root = _copy_toy(toy_root, tmp_path / "toy")
    ds = PairDataset(root, "test", 128, 64)
    a, b = ds.pairs[0]
    Image.new("RGB", (60, 128)).save(root / "test" / a)
    with pytest.raises(DataError, match=r"128 x 60 \(H x W\), expected 128 x 64") as info:
        ds[0]
    assert str(root / "test" / a) in str(info.value)
    data = (root / "test" / b).read_bytes()
    (root / "test" / b).write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="unreadable image") as info:
        ds.image(b)
    assert str(root / "test" / b) in str(info.value)


def test_dataset_deepfashion_layout_with_raw_names(tmp_path):
    root = tmp_path / "fashion"
    (root / "test").mkdir(parents=True)
    raw = ["fashion/WOMEN/Skirts/id_00000629/04_3_back.jpg", "fashion/WOMEN/Skirts/id_00000629/04_1_front.jpg"]
    kp = np.full((18, 2), -1)
    kp[0] = (100, -31)
    header = "name:keypoints_y:keypoints_x" + "," * 34
    rows = [header] + [_row(n, kp[:, 0], kp[:, 1], spaced=False).replace(": ", ":") for n in raw]
    (root / "fasion-resize-annotation-test.csv").write_text("\n".join(rows) + "\n")
    write_pairs(root / "fasion-resize-pairs-test.csv", [(raw[0], raw[1])])
    for n in raw:
        Image.new("RGB", (176, 256), (200, 10, 10)).save(root / "test" / deepfashion_flat_name(n))
    ds = PairDataset(root, "test", 256, 176)
    item = ds[0]
    assert ds.layout == "deepfashion"
    assert item["source_name"] == "fashionWOMENSkirtsid0000062904_3back.jpg"
    assert item["source_keypoints"][0].tolist() == [100, -31]
    assert _item_bytes(item) <= 0.35 * 2**20  # 7.2 MiB with float images and heatmaps
    pose = model_inputs(item, "cpu", ds.sigma)["source_pose"]
    assert pose.shape == (18, 256, 176) and 0 < pose[0].max() < 1


def test_deepfashion_sample_bytes_and_inputs(shared_data, tmp_path):
    """A real DeepFashion image and its keypoints: bytes per item, and the networks' inputs."""
    sample = shared_data / "samples" / "deepfashion"
    name = "fashionMENSweatshirts_Hoodiesid0000600801_4full.jpg"
    (tmp_path / "test").mkdir()
    shutil.copy(sample / name, tmp_path / "test" / name)
    shutil.copy(sample / "test-annotation-test.csv", tmp_path / "fasion-resize-annotation-test.csv")
    ds = PairDataset(tmp_path, "test", 256, 176, pairs=[(name, name)])
    item = ds[0]
    assert _item_bytes(item) <= 0.35 * 2**20
    inputs = model_inputs(item, "cpu", ds.sigma)
    assert torch.equal(inputs["source_image"], _RELEASED_NORMALISE(Image.open(sample / name).convert("RGB")))
    torch.testing.assert_close(inputs["target_pose"], _numpy_heatmaps(ds.annotations[name], 256, 176, 6.0),
                               rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------
# IterationSampler
# --------------------------------------------------------------------------------------------


def _take(sampler, n_batches):
    it = iter(sampler)
    return [[next(it) for _ in range(sampler.per_rank_batch)] for _ in range(n_batches)]


def test_sampler_deterministic_permutation_blocks():
    a, b = IterationSampler(50, 8, seed=3), IterationSampler(50, 8, seed=3)
    assert _take(a, 20) == _take(b, 20)
    assert _take(IterationSampler(50, 8, seed=4), 5) != _take(IterationSampler(50, 8, seed=3), 5)
    stream = [i for batch in _take(IterationSampler(50, 10, seed=3), 15) for i in batch]
    for block in range(3):  # every run of num_items draws is a permutation of all items
        assert sorted(stream[block * 50:(block + 1) * 50]) == list(range(50))
    assert stream[:50] != stream[50:100]
    assert official_epoch_iterations(32) == 125


def test_sampler_exact_resume():
    full = _take(IterationSampler(37, 8, seed=11), 30)
    resumed = IterationSampler(37, 8, seed=11)
    resumed.set_iteration(17)
    assert _take(resumed, 13) == full[17:]

    first = IterationSampler(37, 8, seed=11)
    done = _take(first, 9)
    state = first.state_dict()
    assert state["iteration"] == 9
    second = IterationSampler(37, 8, seed=0)
    second.load_state_dict(state)
    assert done + _take(second, 21) == full
    assert [second.indices(i) for i in range(30)] == full
    with pytest.raises(ValueError, match="num_items"):
        IterationSampler(38, 8, seed=11).load_state_dict(state)


def test_sampler_with_dataloader():
    data = list(range(37))
    sampler = IterationSampler(len(data), 6, seed=5)
    sampler.set_iteration(4)
    loader = iter(DataLoader(data, batch_size=sampler.per_rank_batch, sampler=sampler))
    got = [next(loader).tolist() for _ in range(8)]
    assert got == [sampler.indices(i) for i in range(4, 12)]


def test_sampler_rank_split():
    world, batch = 4, 16
    samplers = [IterationSampler(101, batch, seed=2, rank=r, world_size=world) for r in range(world)]
    single = IterationSampler(101, batch, seed=2)
    per_rank = [_take(s, 12) for s in samplers]
    for it in range(12):
        shares = [per_rank[r][it] for r in range(world)]
        assert all(len(s) == batch // world for s in shares)
        union = [i for s in shares for i in s]
        assert union == single.global_batch(it) == single.indices(it)
        if it < 6:  # within one permutation block a batch never repeats an index
            assert len(set(union)) == batch
    # Resuming with another world size continues the same global stream.
    two = [IterationSampler(101, batch, seed=2, rank=r, world_size=2) for r in range(2)]
    for s in two:
        s.load_state_dict({**single.state_dict(), "iteration": 7})
    assert two[0].indices(7) + two[1].indices(7) == single.global_batch(7)
    with pytest.raises(ValueError):
        IterationSampler(10, 6, seed=0, rank=0, world_size=4)
    with pytest.raises(ValueError):
        IterationSampler(10, 8, seed=0, rank=4, world_size=4)


# --------------------------------------------------------------------------------------------
# Dataset check
# --------------------------------------------------------------------------------------------


def test_check_dataset_reports_everything(toy_root, tmp_path, repo_root, capsys):
    assert check_dataset(toy_root, 128, 64, ["train", "test"], progress=False) == []
    root = _copy_toy(toy_root, tmp_path / "toy")
    names = sorted(read_annotations(root / "market-annotation-test.csv"))
    (root / "test" / names[0]).unlink()
    data = (root / "test" / names[1]).read_bytes()
    (root / "test" / names[1]).write_bytes(data[: len(data) // 2])
    Image.new("RGB", (32, 64)).save(root / "test" / names[2])
    with open(root / "market-annotation-test.csv", "a") as f:
        f.write("broken.jpg: [1, 2]: [3, 4]\n")
    pairs = read_pairs(root / "market-pairs-test.csv")
    write_pairs(root / "market-pairs-test.csv", pairs + [("ghost.jpg", names[3])])
    for n in read_annotations(root / "market-annotation-train.csv"):
        (root / "train" / n).unlink()
    problems = check_dataset(root, 128, 64, ["train", "test"], progress=False)
    text = "\n".join(problems)
    n_test = len(names)
    assert f"market-annotation-test.csv, line {n_test + 2}" in text
    assert f"{root / 'test' / names[0]}: image file not found" in text
    assert f"{root / 'test' / names[1]}: unreadable image" in text
    assert f"{root / 'test' / names[2]}: image is 64 x 32 (H x W), expected 128 x 64" in text
    assert "'ghost.jpg' has no row in" in text
    assert f"{root / 'train'}: no images (empty split)" in text
    assert "more: missing images in" in text  # the 30 missing train images are capped at 20
    kinds = Counter(p.split(":")[0] for p in problems)
    assert kinds[str(root / "train" / "0001_c1s1_000100_00.jpg")] == 1

    main = _load_script(repo_root / "scripts" / "check_dataset.py").main
    assert main(["--root", str(root), "--split", "test"]) == 1
    assert "ghost.jpg" in capsys.readouterr().out
    assert main(["--root", str(toy_root), "--no-decode"]) == 0
    assert "no problems" in capsys.readouterr().out
