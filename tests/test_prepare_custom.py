"""scripts/prepare_custom.py: a dataset from folders of photos, checked and trained on."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from xinggan.data.annotations import read_annotations, read_pairs
from xinggan.prep.framing import read_photo
from xinggan.prep.toy import make_toy_dataset

from photo_helpers import REPO, LookupDetector, load_script

SAMPLE = "fashionMENSweatshirts_Hoodiesid0000600801_4full.jpg"


def toy_identities(folder, detector, seed=11):
    """Three toy people as identity subfolders of 200 x 140 photos; their keypoints registered."""
    toy = folder.parent / f"toy-{seed}"
    make_toy_dataset(toy, seed=seed, identities=2, test_identities=1, poses=3, test_pairs=2,
                     height=200, width=140)
    folders = {}
    for split in ("train", "test"):
        annotations = read_annotations(toy / f"market-annotation-{split}.csv")
        for name, keypoints in annotations.items():
            person = f"person {int(name.split('_')[0])}_x"  # a space and an underscore in the name
            (folder / person).mkdir(parents=True, exist_ok=True)
            image = read_photo(toy / split / name)
            target = folder / person / name.replace(".jpg", ".png")
            Image.fromarray(image).save(target)
            detector.register(read_photo(target), keypoints)
            folders.setdefault(person, []).append(target.name)
    return folders


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    detector = LookupDetector()
    identities = toy_identities(folder, detector)
    first = sorted(identities)[0]
    # A photo whose pose has too few joints, a file that is not an image, a loose file, and an
    # identity with a single photo.
    few = np.full((18, 2), -1)
    few[:5] = [(20, 50), (40, 50), (40, 30), (60, 25), (80, 20)]
    few_photo = folder / first / "few.png"
    Image.fromarray(np.full((120, 100, 3), 90, np.uint8)).save(few_photo)
    detector.register(read_photo(few_photo), few)
    (folder / first / "notes.txt").write_text("not an image")
    (folder / "loose.jpg").write_bytes(b"")
    (folder / "lonely").mkdir()
    lonely = read_photo(folder / first / identities[first][0])[:, ::-1]
    Image.fromarray(lonely).save(folder / "lonely" / "one.png")
    detector.register(lonely, np.stack([np.arange(18) * 9 + 10, np.full(18, 70)], axis=1))
    return folder, detector, identities


def tiny_training(root_overlay, run_dir):
    sets = ["data.num_workers=0", "model.generator.ngf=8", "model.generator.n_blocks=1",
            "model.generator.num_candidates=2", "model.discriminator.ndf=8",
            "model.discriminator.n_blocks=1", "model.generator.dropout=0.0",
            "model.discriminator.dropout=0.0", "loss.lambda_perceptual=0.0",
            "train.batch_size=2", "train.iterations=2", "train.checkpoint_every=2",
            "train.log_every=1", "train.grid_pairs=1"]
    cmd = [sys.executable, "train.py", "--config", "configs/deepfashion.yaml", "--config",
           str(root_overlay), "--run-dir", str(run_dir), "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_prepare_check_and_train(photo_folder, tmp_path, capsys):
    folder, detector, identities = photo_folder
    out = tmp_path / "custom"
    code = load_script("prepare_custom").main(
        ["--images", str(folder), "--out", str(out), "--preset", "deepfashion", "--no-progress",
         "--test-fraction", "0.3"], detector=detector)
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    left_out = (out / "left-out.txt").read_text()
    for fragment in ("few.png: only 5 of 18 joints found", "notes.txt: not a readable image",
                     "loose.jpg: not in an identity subfolder", "lonely: 1 usable photos"):
        assert fragment in left_out and fragment in captured.out, fragment

    # The prepared layout, split by identity, pairs within an identity.
    seen = {}
    for split in ("train", "test"):
        rows = read_annotations(out / f"fasion-resize-annotation-{split}.csv")
        pairs = read_pairs(out / f"fasion-resize-pairs-{split}.csv")
        assert rows and pairs
        ids = {name.split("_")[0] for name in rows}
        seen[split] = ids
        assert all(a.split("_")[0] == b.split("_")[0] and a != b for a, b in pairs)
        per_id = {i: sum(1 for n in rows if n.startswith(i + "_")) for i in ids}
        assert len(pairs) == sum(n * (n - 1) for n in per_id.values())
        for name, kp in rows.items():
            assert Image.open(out / split / name).size == (176, 256)
            present = kp[:, 0] >= 0
            assert (kp[present, 0] < 256).all() and (kp[present, 1] < 176).all()
    assert not seen["train"] & seen["test"]
    assert seen["train"] | seen["test"] == {"person-1-x", "person-2-x", "person-3-x"}
    assert sum(len(v) for v in identities.values()) == sum(
        len(read_annotations(out / f"fasion-resize-annotation-{s}.csv")) for s in ("train", "test"))

    overlay = yaml.safe_load((out / "config.yaml").read_text())["data"]
    assert overlay["height"] == 256 and overlay["width"] == 176 and overlay["dataset"] == "deepfashion"

    check = subprocess.run([sys.executable, "scripts/check_dataset.py", "--config",
                            "configs/deepfashion.yaml", "--config", str(out / "config.yaml")],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr

    run = tiny_training(out / "config.yaml", tmp_path / "run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").is_file()
    assert "finished at iteration 2" in run.stdout


def test_sample_photo_identity_with_white_fill(shared_data, tmp_path, capsys):
    """The DeepFashion sample photo, whole and cut narrow: one identity; white beyond the cut."""
    folder = tmp_path / "photos"
    detector = LookupDetector()
    toy_identities(folder, detector)
    photo = read_photo(shared_data / "samples" / "deepfashion" / SAMPLE)
    keypoints = read_annotations(shared_data / "samples" / "deepfashion" / "test-annotation-test.csv")[SAMPLE]
    (folder / "hoodie").mkdir()
    Image.fromarray(photo).save(folder / "hoodie" / "whole.png")
    detector.register(read_photo(folder / "hoodie" / "whole.png"), keypoints)
    narrow = photo[:, 40:136].copy()  # 256 x 96: the frame reaches past both sides
    shifted = keypoints.copy()
    shifted[:, 1] -= 40
    assert (shifted[:, 1] >= 0).all() and (shifted[:, 1] < 96).all()
    Image.fromarray(narrow).save(folder / "hoodie" / "narrow.png")
    detector.register(read_photo(folder / "hoodie" / "narrow.png"), shifted)
    out = tmp_path / "custom"
    code = load_script("prepare_custom").main(
        ["--images", str(folder), "--out", str(out), "--preset", "deepfashion", "--no-progress",
         "--seed", "1"], detector=detector)
    assert code == 0, capsys.readouterr().err
    split = "test" if (out / "test" / "hoodie_whole.jpg").is_file() else "train"
    rows = read_annotations(out / f"fasion-resize-annotation-{split}.csv")
    # The studio photo is already framed like the dataset: framing moves its joints a little.
    assert np.abs(rows["hoodie_whole.jpg"] - keypoints).max() <= 12
    # The two photos show the same pose: the same keypoints once framed, and the same pixels
    # in the middle; beyond the narrow cut, the frame is white.
    assert np.abs(rows["hoodie_narrow.jpg"] - rows["hoodie_whole.jpg"]).max() <= 1
    whole = np.asarray(Image.open(out / split / "hoodie_whole.jpg")).astype(int)
    cut = np.asarray(Image.open(out / split / "hoodie_narrow.jpg")).astype(int)
    assert np.abs(whole[:, 60:116] - cut[:, 60:116]).mean() < 6
    assert cut[:, :30].min() >= 250 and cut[:, -30:].min() >= 250


def test_inputs_that_make_no_dataset(tmp_path, capsys):
    script = load_script("prepare_custom")
    detector = LookupDetector()
    assert script.main(["--images", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
                       detector=detector) == 2
    assert "none: folder not found" in capsys.readouterr().err
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(flat / "a.png")
    assert script.main(["--images", str(flat), "--out", str(tmp_path / "o")], detector=detector) == 2
    assert "no subfolders" in capsys.readouterr().err
    one = tmp_path / "one"
    toy_identities(one, detector, seed=12)
    for extra in sorted(p for p in one.iterdir())[1:]:
        for f in extra.iterdir():
            f.unlink()
    assert script.main(["--images", str(one), "--out", str(tmp_path / "o")], detector=detector) == 2
    err = capsys.readouterr().err
    assert "1 identities have two or more usable photos; at least two are needed" in err
    assert "Traceback" not in err
    # an output folder that already holds files (an earlier run's) is refused, not mixed in
    used = tmp_path / "used"
    used.mkdir()
    (used / "old.jpg").write_bytes(b"x")
    assert script.main(["--images", str(one), "--out", str(used)], detector=detector) == 2
    assert "the output folder is not empty" in capsys.readouterr().err
