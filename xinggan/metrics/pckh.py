"""PCKh from detected keypoints, as PATN's ``tool/calPCKH_market.py`` / ``calPCKH_fashion.py``
(rule in docs/data_and_metrics.md); the detections come in as annotation-format keypoints."""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from ..data.annotations import MISSING

__all__ = ["HEAD_JOINTS", "ALPHA", "pckh_pair", "pckh"]

HEAD_JOINTS = (0, 1, 14, 15, 16, 17)
ALPHA = 0.5


def _present(kp: np.ndarray) -> np.ndarray:
    return (kp[:, 0] != MISSING) & (kp[:, 1] != MISSING)


def pckh_pair(detected: np.ndarray, target: np.ndarray, alpha: float = ALPHA) -> Optional[tuple[int, int]]:
    """``(correct, present target joints)`` for one pair of ``(18, 2)`` (y, x) arrays, or None if skipped."""
    detected = np.asarray(detected, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    target_present = _present(target)
    head = [j for j in HEAD_JOINTS if target_present[j]]
    if len(head) < 2:
        return None
    head_height = target[head, 0].max() - target[head, 0].min()
    head_width = target[head, 1].max() - target[head, 1].min()
    both = target_present & _present(detected)
    dy = np.abs(detected[:, 0] - target[:, 0])
    dx = np.abs(detected[:, 1] - target[:, 1])
    correct = both & (dx < alpha * head_width) & (dy < alpha * head_height)
    return int(correct.sum()), int(target_present.sum())


def pckh(detected: Iterable[np.ndarray], targets: Iterable[np.ndarray], alpha: float = ALPHA) -> dict:
    """PCKh over pairs: ``{'score', 'correct', 'total', 'scored_pairs', 'skipped_pairs'}``."""
    correct = total = scored = skipped = 0
    for det, tgt in zip(detected, targets):
        result = pckh_pair(det, tgt, alpha)
        if result is None:
            skipped += 1
            continue
        correct += result[0]
        total += result[1]
        scored += 1
    score = correct / total if total else float("nan")
    return {"score": score, "correct": correct, "total": total, "scored_pairs": scored, "skipped_pairs": skipped}
