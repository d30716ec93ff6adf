"""The procedurally drawn toy dataset: exact Market format, determinism, learnable structure."""
from __future__ import annotations

import filecmp
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xinggan.data import build_pairs, read_annotations, read_pairs
from xinggan.prep.toy import POSES, Identity, _Layer, draw_person, make_toy_dataset, toy_pose

from photo_helpers import load_script

ROW = re.compile(r"^\d{4}_c\d+s1_\d{6}_00\.jpg: \[(-?\d+, ){17}-?\d+\]: \[(-?\d+, ){17}-?\d+\]$")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".complete")


def test_layout_and_exact_market_format(toy_root, toy_params):
    for split, ids in (("train", toy_params["identities"]), ("test", toy_params["test_identities"])):
        lines = (toy_root / f"market-annotation-{split}.csv").read_text().splitlines()
        assert lines[0] == "name:keypoints_y:keypoints_x"
        assert len(lines) - 1 == ids * toy_params["poses"]
        assert all(ROW.match(line) for line in lines[1:]), [l for l in lines[1:] if not ROW.match(l)][:2]
        assert (toy_root / f"market-pairs-{split}.csv").read_text().startswith("from,to\n")
        images = sorted(p.name for p in (toy_root / split).iterdir())
        assert images == sorted(read_annotations(toy_root / f"market-annotation-{split}.csv"))
        with Image.open(toy_root / split / images[0]) as img:
            assert img.size == (64, 128) and img.mode == "RGB" and img.format == "JPEG"
    train_ids = {n.split("_")[0] for n in read_annotations(toy_root / "market-annotation-train.csv")}
    test_ids = {n.split("_")[0] for n in read_annotations(toy_root / "market-annotation-test.csv")}
    assert len(train_ids) == 6 and len(test_ids) == 3 and not train_ids & test_ids
    assert "0000" not in train_ids | test_ids


def test_pairs_follow_the_market_rule(toy_root):
    train = read_annotations(toy_root / "market-annotation-train.csv")
    pairs = read_pairs(toy_root / "market-pairs-train.csv")
    assert pairs == build_pairs(train) and len(pairs) > 50
    test = read_annotations(toy_root / "market-annotation-test.csv")
    test_pairs = read_pairs(toy_root / "market-pairs-test.csv")
    assert len(test_pairs) == 20 == len(set(test_pairs))
    assert set(test_pairs) <= set(build_pairs(test))


def test_keypoints_inside_frame_and_some_missing(toy_root):
    table = np.stack(list(read_annotations(toy_root / "market-annotation-train.csv").values()))
    present = table[..., 0] >= 0
    assert np.array_equal(present, table[..., 1] >= 0)
    assert table[..., 0].max() <= 127 and table[..., 1].max() <= 63
    missing_per_image = (~present).sum(axis=1)
    assert (missing_per_image > 0).any() and (missing_per_image == 0).any()
    assert missing_per_image.max() <= 6


def test_deterministic_from_seed(tmp_path):
    small = dict(identities=2, test_identities=1, poses=3, test_pairs=4)
    make_toy_dataset(tmp_path / "a", seed=7, **small)
    make_toy_dataset(tmp_path / "b", seed=7, **small)
    make_toy_dataset(tmp_path / "c", seed=8, **small)
    files = _files(tmp_path / "a")
    assert files == _files(tmp_path / "b") == _files(tmp_path / "c") and len(files) == 13
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert mismatch == [] and errors == []
    _, mismatch, _ = filecmp.cmpfiles(tmp_path / "a", tmp_path / "c", files, shallow=False)
    assert [f for f in mismatch if f.endswith(".jpg")]


def test_drawing_depends_only_on_identity_and_pose():
    identity = Identity.sample(np.random.default_rng([0, 1, 0]))
    for pose in POSES:
        kp, view = toy_pose(identity, pose, np.random.default_rng(3))
        layers = []
        for _ in range(2):
            layer = _Layer(128, 64, 1.0)
            draw_person(layer, identity, kp, view)
            layers.append(layer.downsampled(128, 64))
        np.testing.assert_array_equal(layers[0][0], layers[1][0])
        np.testing.assert_array_equal(layers[0][1], layers[1][1])
        assert layers[0][1].mean() > 0.05  # the person covers part of the frame
    other_kp, other_view = toy_pose(identity, "arms_up", np.random.default_rng(3))
    layer = _Layer(128, 64, 1.0)
    draw_person(layer, identity, other_kp, other_view)
    assert not np.array_equal(layer.downsampled(128, 64)[1], layers[0][1])


def test_appearance_is_consistent_across_poses(toy_root, toy_params):
    """The shirt colour at the lower chest is the identity's, whatever the pose and background."""
    annotations = read_annotations(toy_root / "market-annotation-train.csv")
    by_person: dict[str, list[np.ndarray]] = {}
    for name, kp in annotations.items():
        if (kp[[1, 8, 11]] < 0).any():
            continue
        neck, mid_hip = kp[1].astype(float), (kp[8] + kp[11]) / 2.0
        y, x = np.rint(neck + 0.7 * (mid_hip - neck)).astype(int)
        img = np.asarray(Image.open(toy_root / "train" / name).convert("RGB"), dtype=float)
        by_person.setdefault(name.split("_")[0], []).append(img[y - 1:y + 2, x - 1:x + 2].mean(axis=(0, 1)))
    means = []
    for pid, colours in by_person.items():
        colours = np.stack(colours)
        identity = Identity.sample(np.random.default_rng([toy_params["seed"], int(pid), 0]))
        assert len(colours) >= 3
        assert np.abs(colours - np.array(identity.top)).max() < 40, (pid, colours, identity.top)
        means.append(colours.mean(axis=0))
    spread = np.abs(np.stack(means)[:, None] - np.stack(means)[None]).max(axis=-1)
    assert spread[np.triu_indices(len(means), 1)].max() > 40  # identities do differ


def test_script(tmp_path, capsys):
    module = load_script("make_toy_dataset")
    args = ["--out", str(tmp_path / "toy"), "--identities", "2", "--test-identities", "1", "--poses", "3"]
    assert module.main(args) == 0
    assert "train: 6 images" in capsys.readouterr().out
    assert len(read_annotations(tmp_path / "toy" / "market-annotation-test.csv")) == 3
