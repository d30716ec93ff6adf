"""The MediaPipe detector on real photos, and the photo commands with it (optional extra).

Run in the environment of requirements-pose.txt (``make test-pose``); skipped elsewhere.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

mediapipe = pytest.importorskip("mediapipe")

from xinggan.data.annotations import JOINT_NAMES, read_annotations  # noqa: E402
from xinggan.keypoints import build_detector  # noqa: E402
from xinggan.metrics.pckh import pckh_pair  # noqa: E402
from xinggan.prep.framing import read_photo  # noqa: E402

from photo_helpers import REPO, load_script, train_tiny_checkpoint  # noqa: E402

SAMPLE = "fashionMENSweatshirts_Hoodiesid0000600801_4full.jpg"
LEGS = [JOINT_NAMES.index(n) for n in ("right_knee", "right_ankle", "left_knee", "left_ankle")]


@pytest.fixture(scope="module")
def detector():
    det = build_detector("mediapipe")
    yield det
    det.close()


@pytest.fixture(scope="module")
def sample(shared_data):
    folder = shared_data / "samples" / "deepfashion"
    return read_photo(folder / SAMPLE), read_annotations(folder / "test-annotation-test.csv")[SAMPLE]


def astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()


@pytest.mark.parametrize("scale", [1, 2])
def test_deepfashion_photo_matches_its_annotation(detector, sample, scale):
    image, annotation = sample
    if scale != 1:
        h, w = image.shape[:2]
        image = np.asarray(Image.fromarray(image).resize((w * scale, h * scale), Image.BICUBIC))
    detected = detector.detect(image)
    assert detected.shape == (18, 2) and detected.dtype == np.int64
    # Back to the annotation's pixels: pixel centre (p + 0.5) / scale - 0.5.
    back = np.where(detected >= 0, np.rint((detected + 0.5) / scale - 0.5), -1).astype(np.int64)
    correct, total = pckh_pair(back, annotation)
    assert total == 18
    assert correct / total >= 0.9, (correct, back.tolist())


def test_astronaut_is_an_upper_body_with_missing_legs(detector):
    image = astronaut()
    kp = detector.detect(image)
    assert (kp[LEGS] == -1).all()
    for name in ("nose", "neck", "right_shoulder", "left_shoulder", "right_eye", "left_eye"):
        assert (kp[JOINT_NAMES.index(name)] >= 0).all(), name
    # She faces the camera: her right side is on the image's left.
    assert kp[JOINT_NAMES.index("right_shoulder"), 1] < kp[JOINT_NAMES.index("left_shoulder"), 1]
    assert kp[JOINT_NAMES.index("right_eye"), 1] < kp[JOINT_NAMES.index("left_eye"), 1]
    # Eyes above the nose, nose above the neck.
    assert kp[JOINT_NAMES.index("right_eye"), 0] < kp[0, 0] < kp[1, 0]


def test_nobody_in_a_blank_image(detector):
    assert (detector.detect(np.full((256, 176, 3), 255, np.uint8)) == -1).all()


def test_detector_rejects_weights():
    with pytest.raises(ValueError, match="takes no weights"):
        build_detector("mediapipe", weights="model.bin")


@pytest.fixture(scope="module")
def photo_dir(sample, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mp_photos")
    image, _ = sample
    Image.fromarray(image).save(folder / "hoodie.png")
    Image.fromarray(astronaut()).save(folder / "astronaut.jpg", quality=95)
    Image.fromarray(np.full((100, 80, 3), 255, np.uint8)).save(folder / "blank.png")
    return folder


def test_detect_keypoints_command(photo_dir, sample, tmp_path):
    (tmp_path / "in").mkdir()
    for f in photo_dir.iterdir():
        (tmp_path / "in" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "in" / "broken.jpg").write_text("no jpeg")
    out = tmp_path / "kp.csv"
    cmd = [sys.executable, "scripts/detect_keypoints.py", "--images", str(tmp_path / "in"),
           "--detector", "mediapipe", "--out", str(out), "--no-progress"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "broken.jpg" in run.stderr and "Traceback" not in run.stderr
    assert "people found: 2 of 3" in run.stdout
    rows = read_annotations(out)
    assert sorted(rows) == ["astronaut.jpg", "blank.png", "hoodie.png"]
    assert (rows["blank.png"] == -1).all() and (rows["astronaut.jpg"][LEGS] == -1).all()
    correct, total = pckh_pair(rows["hoodie.png"], sample[1])
    assert correct / total >= 0.9
    run = subprocess.run(cmd + ["--keep-going"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0


def test_repose_with_detected_keypoints(photo_dir, tiny_data, tmp_path):
    checkpoint = train_tiny_checkpoint(tiny_data, tmp_path / "run")
    out = tmp_path / "out.png"
    cmd = [sys.executable, "scripts/repose.py", "--checkpoint", str(checkpoint), "--source",
           str(photo_dir / "hoodie.png"), "--target", str(photo_dir / "astronaut.jpg"),
           "--out", str(out), "--panel"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert np.asarray(Image.open(out)).shape == (64, 32, 3)
    assert np.asarray(Image.open(tmp_path / "out_panel.png")).shape == (64, 100, 3)
    # Nobody in the target photo: one line naming it.
    cmd[cmd.index("--target") + 1] = str(photo_dir / "blank.png")
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert "blank.png: no person found by the mediapipe detector" in run.stderr
    assert "Traceback" not in run.stderr


def test_prepare_custom_with_mediapipe(sample, tmp_path, capsys):
    image, _ = sample
    photos = tmp_path / "photos"
    (photos / "hoodie").mkdir(parents=True)
    (photos / "astronaut").mkdir()
    Image.fromarray(image).save(photos / "hoodie" / "a.png")
    Image.fromarray(image[:, ::-1]).save(photos / "hoodie" / "b.png")
    wide = np.full((256, 400, 3), 255, np.uint8)
    wide[:, 100:276] = image
    Image.fromarray(wide).save(photos / "hoodie" / "c.png")
    Image.fromarray(astronaut()).save(photos / "astronaut" / "a.jpg")
    Image.fromarray(astronaut()[:, ::-1]).save(photos / "astronaut" / "b.jpg")
    Image.fromarray(np.full((100, 80, 3), 255, np.uint8)).save(photos / "astronaut" / "blank.png")
    out = tmp_path / "custom"
    code = load_script("prepare_custom").main(["--images", str(photos), "--out", str(out),
                                               "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert "blank.png: no person found by the mediapipe detector" in captured.out
    check = subprocess.run([sys.executable, "scripts/check_dataset.py", "--root", str(out)],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    rows = {**read_annotations(out / "fasion-resize-annotation-train.csv"),
            **read_annotations(out / "fasion-resize-annotation-test.csv")}
    assert sorted(rows) == ["astronaut_a.jpg", "astronaut_b.jpg", "hoodie_a.jpg", "hoodie_b.jpg",
                            "hoodie_c.jpg"]
    # The same photo on a wider white canvas frames to the same keypoints.
    assert np.abs(rows["hoodie_a.jpg"] - rows["hoodie_c.jpg"]).max() <= 3
