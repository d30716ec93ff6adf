"""Pose mask of mask-SSIM / mask-IS / mask-LPIPS from the target keypoints, as the PATN tool code's
``produce_ma_mask`` drew it, for a whole batch (steps in docs/data_and_metrics.md)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..data.annotations import MISSING
from ..joints import MASK_LIMBS

__all__ = ["MASK_LIMBS", "POINT_RADIUS", "PoseMaskCache", "pose_mask", "pose_masks", "limb_quadrilaterals"]

POINT_RADIUS = 4
_CLOSING_SIZE = 5
_TOLERANCE = 1e-6      # pixels closer than this to the outline get skimage's exact test
_VERTEX_EPS = 1e-12    # skimage's vertex tolerance
_CHUNK = 256           # poses per vectorised step (bounded memory)

_LIMB_FROM = np.array([a for a, _ in MASK_LIMBS])
_LIMB_TO = np.array([b for _, b in MASK_LIMBS])


def limb_quadrilaterals(keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pose_index (K,), corners (K, 4, 2))`` of every drawable limb of ``(N, 18, 2)`` (y, x) poses;
    corners in drawing order ``from + n, from - n, to - n, to + n``."""
    kp = np.asarray(keypoints, dtype=np.float64)
    present = (kp[..., 0] != MISSING) & (kp[..., 1] != MISSING)            # (N, 18)
    start, end = kp[:, _LIMB_FROM], kp[:, _LIMB_TO]                         # (N, 23, 2)
    direction = start - end
    length = np.sqrt(direction[..., 0] ** 2 + direction[..., 1] ** 2)
    drawable = present[:, _LIMB_FROM] & present[:, _LIMB_TO] & (length > 0)  # coinciding ends: nothing
    pose_index, limb_index = np.nonzero(drawable)
    direction = direction[pose_index, limb_index]
    length = length[pose_index, limb_index]
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1)
    normal = POINT_RADIUS * normal / length[:, None]
    a, b = start[pose_index, limb_index], end[pose_index, limb_index]
    corners = np.stack([a + normal, a - normal, b - normal, b + normal], axis=1)
    return pose_index, corners


def _skimage_point_in_polygon(corners: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """skimage's O'Rourke test (inside, edge or vertex -> True), vectorised, same float operations."""
    yp, xp = corners[..., 0], corners[..., 1]                                # (M, 4)
    x = cols.astype(np.float64)
    y = rows.astype(np.float64)
    x1 = xp[:, -1] - x
    y1 = yp[:, -1] - y
    r_cross = np.zeros(len(x), dtype=np.int64)
    l_cross = np.zeros(len(x), dtype=np.int64)
    vertex = np.zeros(len(x), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(corners.shape[1]):
            x0 = xp[:, i] - x
            y0 = yp[:, i] - y
            vertex |= (-_VERTEX_EPS < x0) & (x0 < _VERTEX_EPS) & (-_VERTEX_EPS < y0) & (y0 < _VERTEX_EPS)
            cross = (x0 * y1 - x1 * y0) / (y1 - y0)
            r_cross += ((y0 > 0) != (y1 > 0)) & (cross > 0)
            l_cross += ((y0 < 0) != (y1 < 0)) & (cross < 0)
            x1, y1 = x0, y0
    return vertex | ((r_cross & 1) != (l_cross & 1)) | ((r_cross & 1) == 1)


def _fill_quadrilaterals(masks: np.ndarray, pose_index: np.ndarray, corners: np.ndarray) -> None:
    """Set the pixels ``skimage.draw.polygon(corners[:, 0], corners[:, 1], shape)`` returns."""
    n, height, width = masks.shape
    if len(corners) == 0:
        return
    ys, xs = corners[..., 0], corners[..., 1]
    # skimage's bounding box: int() truncation of max(0, min), ceil of max, clipped to the image.
    min_r = np.maximum(0.0, ys.min(axis=1)).astype(np.int64)
    max_r = np.minimum(height - 1, np.ceil(ys.max(axis=1))).astype(np.int64)
    min_c = np.maximum(0.0, xs.min(axis=1)).astype(np.int64)
    max_c = np.minimum(width - 1, np.ceil(xs.max(axis=1))).astype(np.int64)
    counts = np.maximum(max_r - min_r + 1, 0)
    if counts.sum() == 0:
        return

    # Per quadrilateral and edge: y range, slanted, the line x = xj + (r - yj) * slope; one copy per row.
    yj, xj = np.roll(ys, 1, axis=1), np.roll(xs, 1, axis=1)
    slanted_edge = ys != yj
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(slanted_edge, (xs - xj) / np.where(slanted_edge, ys - yj, 1.0), 0.0)
    table = np.stack([np.minimum(ys, yj), np.maximum(ys, yj), slanted_edge, xj, yj, slope, ys], axis=1)
    quad = np.repeat(np.arange(len(corners)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    row = min_r[quad] + offsets
    r = row.astype(np.float64)[:, None]
    y_lo, y_hi, slanted, x_j, y_j, slope_e, y_i = np.repeat(table, counts, axis=0).transpose(1, 0, 2)
    crossing = (slanted != 0) & (y_lo <= r) & (r <= y_hi)
    x_cut = x_j + (r - y_j) * slope_e
    left = np.where(crossing, x_cut, np.inf).min(axis=1)
    right = np.where(crossing, x_cut, -np.inf).max(axis=1)
    has_span = left <= right
    left, right = np.where(has_span, left, 0.0), np.where(has_span, right, -1.0)
    # Rows passing (nearly) through a vertex are decided pixel by pixel.
    near_vertex = (np.abs(y_i - r) <= _TOLERANCE).any(axis=1)
    c_min, c_max = min_c[quad], max_c[quad]

    # Interior of the row interval, clear of the outline by more than the tolerance.
    plain = has_span & ~near_vertex
    first = np.maximum(c_min, np.ceil(left + _TOLERANCE)).astype(np.int64)
    last = np.minimum(c_max, np.floor(right - _TOLERANCE)).astype(np.int64)
    fill = plain & (first <= last)
    image = pose_index[quad]
    _paint_runs(masks, image[fill], row[fill], first[fill], last[fill])

    # Pixels within the tolerance of an interval end, and whole rows through a vertex.
    cand_quad, cand_row, cand_col = [], [], []
    for end in (left, right):
        nearest = np.round(end)
        close = plain & (np.abs(nearest - end) <= _TOLERANCE) & (nearest >= c_min) & (nearest <= c_max)
        cand_quad.append(quad[close])
        cand_row.append(row[close])
        cand_col.append(nearest[close].astype(np.int64))
    widths = np.where(near_vertex, c_max - c_min + 1, 0).clip(min=0)
    if widths.sum():
        entry = np.repeat(np.arange(len(quad)), widths)
        step = np.arange(widths.sum()) - np.repeat(np.cumsum(widths) - widths, widths)
        cand_quad.append(quad[entry])
        cand_row.append(row[entry])
        cand_col.append(c_min[entry] + step)
    cand_quad = np.concatenate(cand_quad)
    if len(cand_quad) == 0:
        return
    cand_row = np.concatenate(cand_row)
    cand_col = np.concatenate(cand_col)
    inside = _skimage_point_in_polygon(corners[cand_quad], cand_row, cand_col)
    masks[pose_index[cand_quad[inside]], cand_row[inside], cand_col[inside]] = True


def _paint_runs(masks: np.ndarray, image: np.ndarray, row: np.ndarray, first: np.ndarray,
                last: np.ndarray) -> None:
    """masks[image, row, first:last + 1] = True for every run, with one cumulative sum."""
    n, height, width = masks.shape
    if len(image) == 0:
        return
    base = (image * height + row) * (width + 1)
    size = n * height * (width + 1)
    edges = np.bincount(base + first, minlength=size) - np.bincount(base + last + 1, minlength=size)
    covered = np.cumsum(edges.reshape(n, height, width + 1), axis=2)[..., :width] > 0
    masks |= covered


def _paint_disks(masks: np.ndarray, keypoints: np.ndarray) -> None:
    """Disks (r - y)^2 + (c - x)^2 < 16 around every present joint, clipped to the image."""
    n, height, width = masks.shape
    kp = np.asarray(keypoints, dtype=np.float64)
    present = (kp[..., 0] != MISSING) & (kp[..., 1] != MISSING)
    image, joint = np.nonzero(present)
    if len(image) == 0:
        return
    y, x = kp[image, joint, 0], kp[image, joint, 1]
    span = np.arange(-POINT_RADIUS, POINT_RADIUS + 2)                       # covers any fractional centre
    rows = np.floor(y)[:, None, None] + span[None, :, None]
    cols = np.floor(x)[:, None, None] + span[None, None, :]
    inside = (rows - y[:, None, None]) ** 2 + (cols - x[:, None, None]) ** 2 < POINT_RADIUS ** 2
    inside &= (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    which, rr, cc = np.nonzero(inside)
    masks[image[which], rows[which, rr, 0].astype(np.int64), cols[which, 0, cc].astype(np.int64)] = True


def _closing(masks: np.ndarray) -> np.ndarray:
    """5 x 5 dilation then erosion, the window clipped at the border (equal to skimage's reflect borders)."""
    x = masks.view(np.uint8)
    for axis in (1, 2):
        x = ndimage.maximum_filter1d(x, _CLOSING_SIZE, axis=axis, mode="nearest")
    for axis in (1, 2):
        x = ndimage.minimum_filter1d(x, _CLOSING_SIZE, axis=axis, mode="nearest")
    return x.view(bool)


def pose_masks(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean ``(N, height, width)`` masks from ``(N, 18, 2)`` keypoints ``(y, x)``, ``-1`` missing."""
    kp = np.asarray(keypoints)
    if kp.ndim != 3 or kp.shape[1:] != (18, 2):
        raise ValueError(f"pose_masks expects keypoints of shape (N, 18, 2) as (y, x), got {kp.shape}")
    out = np.empty((kp.shape[0], height, width), dtype=bool)
    for start in range(0, kp.shape[0], _CHUNK):
        part = kp[start:start + _CHUNK]
        masks = np.zeros((part.shape[0], height, width), dtype=bool)
        pose_index, corners = limb_quadrilaterals(part)
        _fill_quadrilaterals(masks, pose_index, corners)
        _paint_disks(masks, part)
        out[start:start + _CHUNK] = _closing(masks)
    return out


def pose_mask(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """:func:`pose_masks` of one ``(18, 2)`` pose."""
    kp = np.asarray(keypoints)
    if kp.shape != (18, 2):
        raise ValueError(f"pose_mask expects keypoints of shape (18, 2) as (y, x), got {kp.shape}")
    return pose_masks(kp[None], height, width)[0]


class PoseMaskCache:
    """``cache(names, keypoints)`` -> bool ``(B, H, W)`` masks, computed once per name and kept as bits;
    ``shift_x`` moves present joints right first (DeepFashion's white columns)."""

    def __init__(self, height: int, width: int, shift_x: int = 0):
        self.height, self.width, self.shift_x = height, width, shift_x
        self._packed: dict = {}

    def __call__(self, names, keypoints: np.ndarray) -> np.ndarray:
        missing = {name: kp for name, kp in zip(names, keypoints) if name not in self._packed}
        if missing:
            kp = np.stack(list(missing.values())).astype(np.float64)
            if self.shift_x:
                kp[..., 1] = np.where(kp[..., 1] != MISSING, kp[..., 1] + self.shift_x, MISSING)
            for name, mask in zip(missing, pose_masks(kp, self.height, self.width)):
                self._packed[name] = np.packbits(mask)
        size = self.height * self.width
        return np.stack([np.unpackbits(self._packed[name], count=size).reshape(self.height, self.width)
                         for name in names]).astype(bool)
