"""OpenPose COCO-18 post-processing: heatmaps and part affinity fields -> one person's 18 joints.

The steps of ``compute_cordinates`` in PATN's ``tool/compute_coordinates.py`` (peaks, limb
scores along the PAFs, people assembled from limbs, the best person), listed in
datasets/README.md ("Keypoint detectors"). Where the released loop would raise an
``IndexError`` (a connection touching more than two people), only the first two are used.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

from xinggan.joints import NUM_JOINTS, OPENPOSE_LIMBS

__all__ = ["PAF_CHANNELS", "assemble_people", "best_person", "connect_limbs", "find_peaks"]

# The PAF channels (x, y) of each limb: PAF_CHANNELS[k] belongs to OPENPOSE_LIMBS[k].
PAF_CHANNELS = ((12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5), (6, 7),
                (8, 9), (10, 11), (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27))
PEAK_THRESHOLD = 0.1
PAF_THRESHOLD = 0.05
PAF_SAMPLES = 10
NUM_PARTS = NUM_JOINTS


def find_peaks(heatmaps: np.ndarray, threshold: float = PEAK_THRESHOLD) -> list[list[tuple]]:
    """Per part, the peaks ``(x, y, score, id)`` of ``heatmaps`` ``(H, W, >=18)``."""
    peaks, counter = [], 0
    for part in range(NUM_PARTS):
        original = heatmaps[:, :, part]
        smoothed = gaussian_filter(original, sigma=3)
        padded = np.pad(smoothed, 1, constant_values=0)
        centre = padded[1:-1, 1:-1]
        is_peak = ((centre >= padded[:-2, 1:-1]) & (centre >= padded[2:, 1:-1]) &
                   (centre >= padded[1:-1, :-2]) & (centre >= padded[1:-1, 2:]) & (centre > threshold))
        ys, xs = np.nonzero(is_peak)
        part_peaks = [(int(x), int(y), float(original[y, x]), counter + i) for i, (y, x) in enumerate(zip(ys, xs))]
        counter += len(part_peaks)
        peaks.append(part_peaks)
    return peaks


def _round_half_away(values: np.ndarray) -> np.ndarray:
    """Python 2's ``round`` (half away from zero), then ``int``."""
    return (np.sign(values) * np.floor(np.abs(values) + 0.5)).astype(np.int64)


def connect_limbs(peaks: list, pafs: np.ndarray, image_height: int) -> tuple[list, set]:
    """Per limb, accepted connections ``[id A, id B, score, i, j]``; and the limbs with no candidates."""
    connections, absent = [], set()
    for k, ((a, b), (cx, cy)) in enumerate(zip(OPENPOSE_LIMBS, PAF_CHANNELS)):
        cand_a, cand_b = peaks[a], peaks[b]
        if not cand_a or not cand_b:
            absent.add(k)
            connections.append(np.zeros((0, 5)))
            continue
        scored = []
        for i, pa in enumerate(cand_a):
            for j, pb in enumerate(cand_b):
                vx, vy = pb[0] - pa[0], pb[1] - pa[1]
                norm = math.sqrt(vx * vx + vy * vy)
                if norm == 0:  # the released code divides by zero here; the limb is never accepted
                    continue
                vx, vy = vx / norm, vy / norm
                xs = _round_half_away(np.linspace(pa[0], pb[0], num=PAF_SAMPLES))
                ys = _round_half_away(np.linspace(pa[1], pb[1], num=PAF_SAMPLES))
                samples = pafs[ys, xs, cx] * vx + pafs[ys, xs, cy] * vy
                score = samples.sum() / len(samples) + min(0.5 * image_height / norm - 1, 0)
                if np.count_nonzero(samples > PAF_THRESHOLD) > 0.8 * len(samples) and score > 0:
                    scored.append((i, j, score))
        scored.sort(key=lambda c: c[2], reverse=True)  # stable, as Python's sorted
        chosen, used_i, used_j = [], set(), set()
        for i, j, score in scored:
            if i not in used_i and j not in used_j:
                chosen.append([cand_a[i][3], cand_b[j][3], score, i, j])
                used_i.add(i)
                used_j.add(j)
                if len(chosen) >= min(len(cand_a), len(cand_b)):
                    break
        connections.append(np.array(chosen, dtype=np.float64).reshape(-1, 5))
    return connections, absent


def assemble_people(peaks: list, connections: list, absent: set) -> tuple[np.ndarray, np.ndarray]:
    """Subsets ``(n, 20)``: 18 candidate ids (``-1`` none), total score, part count; and the candidates."""
    candidates = np.array([p for part in peaks for p in part], dtype=np.float64).reshape(-1, 4)
    subset = -np.ones((0, NUM_PARTS + 2))
    for k, (index_a, index_b) in enumerate(OPENPOSE_LIMBS):
        if k in absent:
            continue
        for conn in connections[k]:
            part_a, part_b, score = conn[0], conn[1], conn[2]
            hits = [s for s in range(len(subset))
                    if subset[s][index_a] == part_a or subset[s][index_b] == part_b][:2]
            if len(hits) == 2 and not np.any(((subset[hits[0]] >= 0) & (subset[hits[1]] >= 0))[:-2]):
                s1, s2 = hits  # two disjoint people: merged
                subset[s1][:-2] += subset[s2][:-2] + 1
                subset[s1][-2:] += subset[s2][-2:]
                subset[s1][-2] += score
                subset = np.delete(subset, s2, 0)
            elif hits and (len(hits) == 2 or subset[hits[0]][index_b] != part_b):  # the first one extended
                subset[hits[0]][index_b] = part_b
                subset[hits[0]][-1] += 1
                subset[hits[0]][-2] += candidates[int(part_b), 2] + score
            elif not hits and k < 17:
                row = -np.ones(NUM_PARTS + 2)
                row[index_a], row[index_b] = part_a, part_b
                row[-1] = 2
                row[-2] = candidates[int(part_a), 2] + candidates[int(part_b), 2] + score
                subset = np.vstack([subset, row])
    keep = [s for s in range(len(subset)) if not (subset[s][-1] < 4 or subset[s][-2] / subset[s][-1] < 0.4)]
    return subset[keep], candidates


def best_person(heatmaps: np.ndarray, pafs: np.ndarray, image_height: int) -> np.ndarray:
    """``(18, 2)`` int64 ``(y, x)`` of the highest-scoring person, ``-1`` for missing joints."""
    peaks = find_peaks(heatmaps)
    connections, absent = connect_limbs(peaks, pafs, image_height)
    subset, candidates = assemble_people(peaks, connections, absent)
    keypoints = -np.ones((NUM_PARTS, 2), dtype=np.int64)
    if len(subset) == 0:
        return keypoints
    person = subset[int(np.argmax(subset[:, -2]))]
    for part in range(NUM_PARTS):
        index = int(person[part])
        if index != -1:
            keypoints[part] = (int(candidates[index, 1]), int(candidates[index, 0]))
    return keypoints
