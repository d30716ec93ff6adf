"""Pose mask: hand-checkable cases and equality with skimage.draw.polygon on real annotations."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import polygon
from skimage.morphology import dilation, erosion

from xinggan.data import read_annotations
from xinggan.metrics.mask import MASK_LIMBS, pose_mask, pose_masks


def empty_pose() -> np.ndarray:
    return np.full((18, 2), -1, dtype=np.int64)


def brute_disk(height, width, y, x):
    rows, cols = np.mgrid[0:height, 0:width]
    return (rows - y) ** 2 + (cols - x) ** 2 < 16


def brute_closing(mask: np.ndarray) -> np.ndarray:
    """5x5 max then 5x5 min over the part of each window inside the image (explicit loops)."""
    h, w = mask.shape

    def window(img, reduce):
        out = np.zeros_like(img)
        for r in range(h):
            for c in range(w):
                out[r, c] = reduce(img[max(r - 2, 0):r + 3, max(c - 2, 0):c + 3])
        return out

    return window(window(mask, np.max), np.min)


def skimage_reference(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """The released recipe with skimage.draw.polygon, brute-force disks and skimage morphology."""
    kp = keypoints.astype(np.float64)
    mask = np.zeros((height, width), dtype=bool)
    for a, b in MASK_LIMBS:
        if (kp[a] == -1).any() or (kp[b] == -1).any():
            continue
        direction = kp[a] - kp[b]
        length = np.linalg.norm(direction)
        if length == 0:
            continue
        normal = np.array([-direction[1], direction[0]]) * 4 / length
        corners = np.array([kp[a] + normal, kp[a] - normal, kp[b] - normal, kp[b] + normal])
        rr, cc = polygon(corners[:, 0], corners[:, 1], shape=(height, width))
        mask[rr, cc] = True
    for y, x in kp:
        if y != -1 and x != -1:
            mask |= brute_disk(height, width, y, x)
    square = np.ones((5, 5), dtype=bool)
    return erosion(dilation(mask, square), square)


def test_single_joint_is_a_disk_of_45_pixels():
    kp = empty_pose()
    kp[0] = (10, 12)
    mask = pose_mask(kp, 32, 32)
    expected = brute_disk(32, 32, 10, 12)
    assert expected.sum() == 45  # 7 + 2*7 + 2*7 + 2*5 lattice points with r^2 + c^2 < 16
    np.testing.assert_array_equal(mask, expected)  # a digital disk is closed under the 5x5 closing


def test_limb_with_coinciding_ends_draws_nothing():
    kp = empty_pose()
    kp[1] = kp[2] = (15, 15)   # (1, 2) is a limb, but it has no direction
    np.testing.assert_array_equal(pose_mask(kp, 32, 32), brute_disk(32, 32, 15, 15))


def test_missing_end_skips_the_limb():
    kp = empty_pose()
    kp[2] = (16, 10)
    kp[3] = (16, 30)
    kp[3, 1] = -1  # x missing is enough
    np.testing.assert_array_equal(pose_mask(kp, 32, 40), brute_disk(32, 40, 16, 10))


def test_horizontal_limb_rectangle():
    kp = empty_pose()
    kp[2] = (16, 10)   # right shoulder
    kp[3] = (16, 30)   # right elbow; (2, 3) is a limb
    mask = pose_mask(kp, 32, 40)
    rows, cols = np.mgrid[0:32, 0:40]
    # Corners (16 +- 4, 10) and (16 +- 4, 30); polygon rasterisation includes the edges.
    rectangle = (rows >= 12) & (rows <= 20) & (cols >= 10) & (cols <= 30)
    expected = brute_closing(rectangle | brute_disk(32, 40, 16, 10) | brute_disk(32, 40, 16, 30))
    np.testing.assert_array_equal(mask, expected)
    ys, xs = np.nonzero(mask)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (12, 20, 7, 33)


def test_closing_fills_small_gaps():
    kp = empty_pose()
    kp[4] = (16, 10)   # right wrist
    kp[7] = (16, 19)   # left wrist: no limb joins them
    raw = brute_disk(32, 32, 16, 10) | brute_disk(32, 32, 16, 19)
    mask = pose_mask(kp, 32, 32)
    assert not raw[16, 14] and not raw[16, 15]
    assert mask[16, 14] and mask[16, 15]
    np.testing.assert_array_equal(mask, brute_closing(raw))


def test_border_is_not_eroded():
    kp = empty_pose()
    kp[0] = (0, 0)
    mask = pose_mask(kp, 20, 20)
    assert mask[0, 0]  # zero-padded binary erosion would remove it
    np.testing.assert_array_equal(mask, brute_closing(brute_disk(20, 20, 0, 0)))


def test_matches_skimage_on_synthetic_poses():
    rng = np.random.default_rng(0)
    poses = rng.integers(-10, 70, size=(60, 18, 2))
    poses[rng.random((60, 18)) < 0.25] = -1
    # Limb directions with integer length (3-4-5, 5-12-13) put pixel centres exactly on slanted edges.
    poses[0, 1], poses[0, 2] = (20, 20), (23, 24)
    poses[1, 1], poses[1, 2] = (10, 30), (22, 25)
    poses[2, 1], poses[2, 5] = (30, 10), (30, 40)     # horizontal
    poses[3, 1], poses[3, 8] = (5, 33), (45, 33)      # vertical
    masks = pose_masks(poses, 64, 48)
    for kp, mask in zip(poses, masks):
        np.testing.assert_array_equal(mask, skimage_reference(kp, 64, 48))


def test_matches_skimage_on_real_annotations(shared_data):
    market = read_annotations(shared_data / "market" / "market-annotation-test.csv")
    names = sorted(market)[::97][:150]
    poses = np.stack([market[n] for n in names])
    for name, kp, mask in zip(names, poses, pose_masks(poses, 128, 64)):
        np.testing.assert_array_equal(mask, skimage_reference(kp, 128, 64), err_msg=name)
    fashion = read_annotations(shared_data / "deepfashion" / "fasion-resize-annotation-test.csv")
    out_of_frame = [n for n, kp in fashion.items() if (kp[:, 1] < -1).any() or (kp[:, 1] > 175).any()]
    names = out_of_frame[:10] + sorted(fashion)[::401][:10]
    poses = np.stack([fashion[n] for n in names])
    for name, kp, mask in zip(names, poses, pose_masks(poses, 256, 176)):
        np.testing.assert_array_equal(mask, skimage_reference(kp, 256, 176), err_msg=name)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="18, 2"):
        pose_mask(np.zeros((17, 2)), 10, 10)


def test_mask_cache_and_shift():
    from xinggan.metrics.mask import PoseMaskCache

    rng = np.random.default_rng(3)
    poses = rng.integers(0, 60, size=(3, 18, 2))
    poses[0, 5] = -1
    cache = PoseMaskCache(64, 48)
    first = cache(["a", "b", "a"], poses[[0, 1, 0]])
    np.testing.assert_array_equal(first, pose_masks(poses[[0, 1, 0]], 64, 48))
    # A name already seen is not recomputed from the keypoints passed again.
    np.testing.assert_array_equal(cache(["a"], poses[[2]])[0], first[0])
    shifted = PoseMaskCache(64, 48 + 20, shift_x=10)(["a"], poses[[0]])[0]
    moved = poses[0].copy()
    moved[moved[:, 1] != -1, 1] += 10
    np.testing.assert_array_equal(shifted, pose_mask(moved, 64, 68))
