"""Fitting a person into a model's frame, reading photos, skeleton drawing, the 33-to-18 mapping."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from xinggan.data.annotations import JOINT_NAMES, DataError
from xinggan.joints import SKELETON_LIMBS
from xinggan.keypoints.mediapipe_pose import landmarks_to_keypoints
from xinggan.prep.framing import check_joints, fit_keypoints, fit_to_frame, read_photo
from xinggan.visualize import draw_skeleton

from photo_helpers import REPO

# A standing person's 18 joints (y, x) in a 600 x 400 photo, facing the camera.
PERSON = np.array([
    [140, 200], [190, 200], [195, 160], [260, 150], [320, 145], [195, 240], [260, 250], [320, 255],
    [320, 175], [420, 172], [510, 170], [320, 225], [420, 228], [510, 230], [130, 190], [130, 210],
    [135, 180], [135, 220]], dtype=np.int64)


def dotted_photo(keypoints, height=600, width=400, background=(40, 90, 60)):
    """A photo with a 9 x 9 square of a distinct colour centred on each joint."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = background
    colours = {}
    for j, (y, x) in enumerate(keypoints):
        if y < 0:
            continue
        colour = (20 + 12 * j, 255 - 11 * j, (97 * j) % 256)
        image[max(0, y - 4): y + 5, max(0, x - 4): x + 5] = colour
        colours[j] = np.array(colour)
    return image, colours


@pytest.mark.parametrize("height, width, fill", [(256, 176, "white"), (128, 64, "border")])
def test_framed_keypoints_land_on_their_pixels(height, width, fill):
    image, colours = dotted_photo(PERSON)
    framed = fit_to_frame(image, PERSON, height, width, fill)
    assert framed.image.shape == (height, width, 3) and framed.image.dtype == np.uint8
    kp = framed.keypoints
    assert ((kp[:, 0] >= 0) & (kp[:, 0] < height) & (kp[:, 1] >= 0) & (kp[:, 1] < width)).all()
    # The pixel under each mapped joint shows that joint's colour (the squares shrink with the
    # scale, so compare with the nearest pixel; a wrong mapping lands on another colour).
    for j, colour in colours.items():
        y, x = kp[j]
        got = framed.image[y, x].astype(int)
        assert np.abs(got - colour).max() <= 40, (JOINT_NAMES[j], got, colour)
    # The person fills the frame's height within the margin.
    span = kp[:, 0].max() - kp[:, 0].min()
    assert 0.7 * height < span < 0.95 * height


def test_keypoints_alone_fit_as_with_the_image():
    image, _ = dotted_photo(PERSON)
    framed = fit_to_frame(image, PERSON, 256, 176, "white")
    assert np.array_equal(fit_keypoints(PERSON, 256, 176), framed.keypoints)
    assert np.array_equal(framed.map_keypoints(PERSON), framed.keypoints)


def test_missing_joints_stay_missing_and_scale_does_not_matter():
    kp = PERSON.copy()
    kp[[9, 10, 12, 13]] = -1  # no legs
    small = fit_keypoints(kp, 256, 176)
    assert (small[[9, 10, 12, 13]] == -1).all() and (small[[0, 1, 2, 5, 8, 11]] >= 0).all()
    big = fit_keypoints(np.where(kp >= 0, kp * 3, -1), 256, 176)  # the same photo at 3x
    assert np.abs(big - small).max() <= 1


@pytest.mark.parametrize("fill", ["white", "border"])
def test_beyond_the_photo_is_filled_as_asked(fill):
    # A person at the left edge of a wide photo: the frame reaches past the photo's left edge.
    image = np.zeros((300, 600, 3), np.uint8)
    image[:, :, 0] = np.arange(600)[None, :] % 256  # a horizontal ramp
    image[:, :, 1] = 77
    kp = PERSON // 2  # 300 x 200 person
    kp[:, 1] -= 90  # shoulders near x = -10..30: some joints near/at the photo's edge
    kp[kp[:, 1] < 0, 1] = 0
    framed = fit_to_frame(image, kp, 256, 176, fill)
    left_column = framed.image[:, 0].astype(int)
    if fill == "white":
        assert (left_column == 255).all()
    else:  # the photo's first column repeated: red 0, green 77
        assert np.abs(left_column[:, 0]).max() <= 3 and np.abs(left_column[:, 1] - 77).max() <= 3


def test_check_joints_names_the_file():
    with pytest.raises(DataError, match=r"me\.jpg: no person found by the x detector"):
        check_joints(np.full((18, 2), -1), "me.jpg", 8, "x")
    few = np.full((18, 2), -1)
    few[[0, 1, 2]] = 10
    with pytest.raises(DataError, match=r"me\.jpg: only 3 of 18 joints found.*right_elbow.*at least 8"):
        check_joints(few, "me.jpg", 8)
    assert check_joints(PERSON, "me.jpg", 8) == 18


def test_read_photo_any_mode_and_format(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "a.png")
    Image.fromarray(rgb).convert("L").save(tmp_path / "b.bmp")
    Image.fromarray(rgb).convert("P").save(tmp_path / "c.gif")
    Image.fromarray(rgb).save(tmp_path / "d.tiff")
    Image.fromarray((np.arange(600).reshape(30, 20) * 100).astype(np.uint16)).save(tmp_path / "e.png")
    for name in ("a.png", "b.bmp", "c.gif", "d.tiff", "e.png"):
        image = read_photo(tmp_path / name)
        assert image.shape == (30, 20, 3) and image.dtype == np.uint8, name
    assert np.array_equal(read_photo(tmp_path / "a.png"), rgb)
    sixteen = read_photo(tmp_path / "e.png")[..., 0].astype(int)
    assert sixteen.max() > 200 and sixteen.min() == 0  # scaled to 8 bits, not clipped white


def test_read_photo_applies_exif_orientation(tmp_path):
    rgb = np.zeros((30, 20, 3), np.uint8)
    rgb[:5] = 255  # white band at the top
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(tmp_path / "r.jpg", exif=exif, quality=95)
    upright = read_photo(tmp_path / "r.jpg")
    assert upright.shape == (20, 30, 3)
    assert upright[:, -5:].mean() > 200 and upright[:, :5].mean() < 50  # the band is now on the right
    assert read_photo(tmp_path / "r.jpg", upright=False).shape == (30, 20, 3)


def test_read_photo_errors_name_the_file(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"notes\.txt: not a readable image"):
        read_photo(tmp_path / "notes.txt")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "cut.jpg")
    data = (tmp_path / "cut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match=r"cut\.jpg: not a readable image"):
        read_photo(tmp_path / "cut.jpg")
    with pytest.raises(DataError, match=r"gone\.png: file not found"):
        read_photo(tmp_path / "gone.png")


# -- skeleton -------------------------------------------------------------------------------


def test_skeleton_draws_limbs_in_openpose_colours():
    kp = np.full((18, 2), -1)
    kp[1] = (20, 30)  # neck
    kp[2] = (20, 10)  # right shoulder: limb 0 (neck - right shoulder), OpenPose red
    kp[8] = (60, 30)  # right hip: limb 6 (neck - right hip), OpenPose (0, 255, 0)
    picture = draw_skeleton(kp, 80, 40)
    assert picture.shape == (80, 40, 3)
    assert tuple(picture[20, 20]) == (255, 0, 0)  # midway along neck - right shoulder
    assert tuple(picture[40, 30]) == (0, 255, 0)  # midway along neck - right hip
    assert picture[70:].max() == 0 and picture[:10].max() == 0  # nothing beyond the joints
    assert SKELETON_LIMBS[0] == (1, 2) and SKELETON_LIMBS[6] == (1, 8)


def test_skeleton_skips_limbs_with_a_missing_end_and_blends_over_a_photo():
    kp = np.full((18, 2), -1)
    kp[3] = (30, 20)  # an elbow alone: its limbs have a missing end
    picture = draw_skeleton(kp, 60, 40, thickness=2)
    assert picture[30, 20].max() > 0  # the joint's dot
    assert (picture.sum(axis=2) > 0).sum() < 30  # only the dot
    grey = np.full((60, 40, 3), 100, np.uint8)
    over = draw_skeleton(np.full((18, 2), -1), 60, 40, background=grey)
    assert np.array_equal(over, grey)


# -- MediaPipe's 33 landmarks -> 18 joints (no MediaPipe needed) ------------------------------

# MediaPipe Pose landmark indices by name (its published landmark list).
MP_INDEX = {"nose": 0, "left_eye": 2, "right_eye": 5, "left_ear": 7, "right_ear": 8,
            "left_shoulder": 11, "right_shoulder": 12, "left_elbow": 13, "right_elbow": 14,
            "left_wrist": 15, "right_wrist": 16, "left_hip": 23, "right_hip": 24,
            "left_knee": 25, "right_knee": 26, "left_ankle": 27, "right_ankle": 28}


def landmarks(height, width, visibility=0.9):
    """33 landmarks, landmark i at pixel (y, x) = (3 + 4 i, 2 + 2 i), normalised."""
    lm = np.zeros((33, 3))
    idx = np.arange(33)
    lm[:, 0] = (2 + 2 * idx) / width
    lm[:, 1] = (3 + 4 * idx) / height
    lm[:, 2] = visibility
    return lm


def test_landmarks_map_by_name_onto_the_18_joints():
    kp = landmarks_to_keypoints(landmarks(200, 150), 200, 150)
    for joint, name in enumerate(JOINT_NAMES):
        if name == "neck":
            continue
        i = MP_INDEX[name]
        assert tuple(kp[joint]) == (3 + 4 * i, 2 + 2 * i), name
    l_sh, r_sh = MP_INDEX["left_shoulder"], MP_INDEX["right_shoulder"]
    # the shoulders' midpoint: ((3 + 4 l) + (3 + 4 r)) / 2, ((2 + 2 l) + (2 + 2 r)) / 2
    assert tuple(kp[1]) == ((6 + 4 * (l_sh + r_sh)) // 2, (4 + 2 * (l_sh + r_sh)) // 2)


def test_invisible_or_outside_landmarks_are_missing():
    lm = landmarks(200, 150)
    lm[MP_INDEX["left_knee"], 2] = 0.49  # below the visibility threshold
    lm[MP_INDEX["right_ankle"], 1] = 1.2  # below the image
    lm[MP_INDEX["nose"], 0] = -0.01  # left of the image
    lm[MP_INDEX["right_shoulder"], 2] = 0.1  # a shoulder gone: no neck either
    kp = landmarks_to_keypoints(lm, 200, 150)
    for joint in (JOINT_NAMES.index(n) for n in ("left_knee", "right_ankle", "nose",
                                                 "right_shoulder", "neck")):
        assert tuple(kp[joint]) == (-1, -1), JOINT_NAMES[joint]
    assert (kp[JOINT_NAMES.index("left_shoulder")] >= 0).all()
    assert kp.dtype == np.int64 and kp.shape == (18, 2)


def test_mediapipe_missing_is_a_clear_error():
    if importlib.util.find_spec("mediapipe") is not None:
        pytest.skip("MediaPipe is installed here: the detector builds")
    from xinggan.keypoints import DetectorUnavailable, build_detector

    with pytest.raises(DetectorUnavailable, match="requirements-pose.txt"):
        build_detector("mediapipe")


def test_the_core_never_imports_mediapipe():
    """Importing xinggan and every module but the MediaPipe detector leaves MediaPipe unloaded."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import xinggan\n"
        "names = [m.name for m in pkgutil.walk_packages(xinggan.__path__, 'xinggan.')]\n"
        "assert 'xinggan.keypoints.mediapipe_pose' in names\n"
        "loaded = []\n"
        "for name in names:\n"
        "    if name == 'xinggan.keypoints.mediapipe_pose':\n"
        "        continue\n"
        "    importlib.import_module(name)\n"
        "    loaded.append(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'mediapipe' or m.startswith('mediapipe.'))\n"
        "print(len(loaded), 'modules;', 'mediapipe modules:', bad)\n"
        "sys.exit(1 if bad else 0)\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "mediapipe modules: []" in run.stdout
