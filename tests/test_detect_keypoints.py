"""scripts/detect_keypoints.py with a stand-in detector: formats, summary, unreadable files."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from xinggan.data.annotations import read_annotations
from xinggan.prep.framing import read_photo

from photo_helpers import REPO, LookupDetector, load_script


@pytest.fixture
def folder(tmp_path):
    """Images of several sizes, modes and formats, one unreadable file, one text file."""
    images = tmp_path / "photos"
    images.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)).save(images / "a.jpg")
    Image.fromarray(rng.integers(0, 256, (40, 90, 4), dtype=np.uint8), "RGBA").save(images / "b.png")
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(images / "c.bmp")
    Image.fromarray(rng.integers(0, 256, (17, 33, 3), dtype=np.uint8)).save(images / "d.tiff")
    (images / "notes.txt").write_text("not an image\n")
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(images / "cut.jpg")
    data = (images / "cut.jpg").read_bytes()
    (images / "cut.jpg").write_bytes(data[:200])
    (images / ".hidden").write_text("skipped silently")
    detector = LookupDetector()
    full = np.stack([np.arange(18) * 10, np.arange(18) * 5], axis=1)
    detector.register(read_photo(images / "a.jpg", upright=False), full)
    partial = full.copy()
    partial[9:] = -1
    detector.register(read_photo(images / "b.png", upright=False), partial)
    return images, detector, full, partial


def test_writes_annotations_and_a_summary(folder, tmp_path, capsys):
    images, detector, full, partial = folder
    script = load_script("detect_keypoints")
    out = tmp_path / "kp.csv"
    code = script.main(["--images", str(images), "--detector", "mediapipe", "--out", str(out),
                        "--no-progress"], detector=detector)
    captured = capsys.readouterr()
    assert code == 1  # two unreadable files, no --keep-going
    assert "notes.txt" in captured.err and "cut.jpg" in captured.err
    rows = read_annotations(out)
    assert list(rows) == ["a.jpg", "b.png", "c.bmp", "d.tiff"]
    assert np.array_equal(rows["a.jpg"], full) and np.array_equal(rows["b.png"], partial)
    assert (rows["c.bmp"] == -1).all() and (rows["d.tiff"] == -1).all()
    assert sorted(detector.seen) == sorted([(300, 200, 3), (40, 90, 3), (64, 64, 3), (17, 33, 3)])
    assert "images: 4 read, 2 unreadable" in captured.out
    assert "people found: 2 of 4" in captured.out
    assert "mean 13.5, min 9, max 18" in captured.out  # (18 + 9) / 2


def test_keep_going_exits_zero(folder, tmp_path):
    images, detector, _, _ = folder
    script = load_script("detect_keypoints")
    code = script.main(["--images", str(images), "--detector", "mediapipe", "--out",
                        str(tmp_path / "kp.csv"), "--keep-going", "--no-progress"], detector=detector)
    assert code == 0 and (tmp_path / "kp.csv").is_file()


def test_a_detector_that_cannot_run_is_one_line(tmp_path):
    images = tmp_path / "photos"
    images.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "a.png")
    for detector in ("nosuch", "mediapipe", "openpose"):
        run = subprocess.run([sys.executable, "scripts/detect_keypoints.py", "--images", str(images),
                              "--detector", detector, "--out", str(tmp_path / "kp.csv")], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
        if detector == "mediapipe" and run.returncode == 0:
            continue  # MediaPipe is installed here: it ran
        assert run.returncode == 2, (detector, run.stdout, run.stderr)
        assert run.stderr.startswith("error:") and "Traceback" not in run.stderr, run.stderr


def test_missing_folder_is_named(tmp_path):
    script = load_script("detect_keypoints")
    assert script.main(["--images", str(tmp_path / "none"), "--detector", "mediapipe", "--out",
                        str(tmp_path / "kp.csv")], detector=LookupDetector()) == 2
