"""A procedurally drawn toy dataset in the Market-1501 layout, for demos and tests: cartoon people
of fixed appearance per identity in several poses; the files are a pure function of the arguments.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..data.annotations import MISSING, build_pairs, write_annotations, write_pairs
from ..joints import NUM_JOINTS
from ..progress import progress as progress_bar

__all__ = ["POSES", "draw_person", "make_toy_dataset", "toy_pose"]

# Joint indices, in the order of :data:`xinggan.joints.JOINT_NAMES`.
(NOSE, NECK, R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST, R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE,
 L_ANKLE, R_EYE, L_EYE, R_EAR, L_EAR) = range(NUM_JOINTS)

POSES = ("stand", "walk", "side_left", "side_right", "arms_up", "arms_out", "wave", "hips", "back")
_REF_HEIGHT = 128  # the body model is laid out for a 128-pixel-high frame and scaled
_SUPERSAMPLE = 4  # drawn at 4x and box-filtered down for smooth edges
_SKINS = ((255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36),
          (92, 56, 30))
_HAIRS = ((20, 16, 14), (60, 38, 24), (110, 70, 35), (200, 160, 90), (150, 60, 25), (140, 140, 140))


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def _jitter(rng: np.random.Generator, colour, amount: int = 12) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


@dataclass(frozen=True)
class Identity:
    """Fixed appearance and proportions of one toy person (pixels of a 128-high frame)."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    top: tuple[int, int, int]
    bottom: tuple[int, int, int]
    shoes: tuple[int, int, int]
    stripe: tuple[int, int, int] | None
    long_sleeves: bool
    shorts: bool
    long_hair: bool
    height: float  # head top to ground
    shoulder: float  # half shoulder width
    hip: float  # half hip width
    arm_width: float
    leg_width: float

    @staticmethod
    def sample(rng: np.random.Generator) -> "Identity":
        top_hue = rng.random()
        bottom_kind = rng.integers(4)
        if bottom_kind == 0:  # denim
            bottom = _rgb(0.6 + 0.03 * rng.standard_normal(), 0.5 + 0.2 * rng.random(), 0.3 + 0.3 * rng.random())
        elif bottom_kind == 1:  # dark
            bottom = _rgb(rng.random(), 0.15 * rng.random(), 0.12 + 0.15 * rng.random())
        elif bottom_kind == 2:  # khaki / light
            bottom = _rgb(0.1 + 0.05 * rng.random(), 0.2 + 0.3 * rng.random(), 0.55 + 0.35 * rng.random())
        else:  # any colour far from the top's hue
            bottom = _rgb(top_hue + 0.3 + 0.4 * rng.random(), 0.4 + 0.5 * rng.random(), 0.3 + 0.6 * rng.random())
        height = float(rng.uniform(100, 116))
        return Identity(
            skin=_jitter(rng, _SKINS[rng.integers(len(_SKINS))]),
            hair=_jitter(rng, _HAIRS[rng.integers(len(_HAIRS))], 8),
            top=_rgb(top_hue, 0.35 + 0.6 * rng.random(), 0.35 + 0.6 * rng.random()),
            bottom=bottom,
            shoes=(30, 28, 28) if rng.random() < 0.6 else _jitter(rng, (225, 225, 220), 10),
            stripe=_rgb(rng.random(), 0.3 + 0.7 * rng.random(), 0.5 + 0.5 * rng.random())
            if rng.random() < 0.4 else None,
            long_sleeves=bool(rng.random() < 0.5),
            shorts=bool(rng.random() < 0.25),
            long_hair=bool(rng.random() < 0.3),
            height=height,
            shoulder=height * float(rng.uniform(0.095, 0.125)),
            hip=height * float(rng.uniform(0.065, 0.085)),
            arm_width=height * float(rng.uniform(0.038, 0.05)),
            leg_width=height * float(rng.uniform(0.05, 0.065)),
        )


def _direction(angle_deg: float) -> np.ndarray:
    """Unit (x, y) vector at ``angle_deg`` from straight down, positive towards +x."""
    a = math.radians(angle_deg)
    return np.array([math.sin(a), math.cos(a)])


def _limb_angles(pose: str, side: bool, j, rng: np.random.Generator) -> tuple[dict, dict]:
    """Arm and leg angles {"r", "l": (upper, lower)}, degrees from straight down (outward; forward in side views)."""
    if side:
        swing = 22 + j(6)
        arms = {"r": (swing, swing + 18 + j(6)), "l": (-swing, -swing + 10 + j(5))}
        stride = 20 + j(5)
        legs = {"r": (-stride, -stride - 25 + j(5)), "l": (stride, stride - 3 + j(3))}
        if rng.random() < 0.5:  # which leg and arm lead
            arms, legs = {"r": arms["l"], "l": arms["r"]}, {"r": legs["l"], "l": legs["r"]}
        return arms, legs
    legs = {"r": (5 + j(2), 1 + j(2)), "l": (5 + j(2), 1 + j(2))}
    down = lambda: (12 + j(4), 6 + j(4))  # noqa: E731
    if pose in ("stand", "back"):
        arms = {"r": down(), "l": down()}
    elif pose == "walk":
        legs = {"r": (3 + j(2), -6 + j(3)), "l": (9 + j(2), 12 + j(3))}
        if rng.random() < 0.5:
            legs = {"r": legs["l"], "l": legs["r"]}
        arms = {"r": (14 + j(3), -10 + j(5)), "l": (10 + j(3), 22 + j(5))}
    elif pose == "arms_up":
        a = 155 + j(8)
        arms = {"r": (a, a + 8 + j(5)), "l": (a + j(4), a + 8 + j(5))}
    elif pose == "arms_out":
        arms = {"r": (88 + j(8), 92 + j(10)), "l": (88 + j(8), 92 + j(10))}
    elif pose == "wave":
        raised = (100 + j(10), 170 + j(8))
        arms = {"r": raised, "l": down()} if rng.random() < 0.5 else {"r": down(), "l": raised}
    else:  # hips: hands on the hips
        arms = {"r": (40 + j(4), -50 + j(6)), "l": (40 + j(4), -50 + j(6))}
    if pose in ("arms_out", "stand") and rng.random() < 0.4:
        legs = {"r": (12 + j(3), 4 + j(2)), "l": (12 + j(3), 4 + j(2))}  # wide stance
    return arms, legs


def _face(view: str, facing: float) -> dict:
    """Face joint -> (x, y) offset from the head centre, in head radii."""
    if view == "front":
        return {NOSE: (0, 0.3), R_EYE: (-0.38, -0.08), L_EYE: (0.38, -0.08), R_EAR: (-0.98, 0.05),
                L_EAR: (0.98, 0.05)}
    if view == "back":  # nose and eyes hidden (marked missing by _annotate)
        return {NOSE: (0, 0), R_EYE: (0, 0), L_EYE: (0, 0), R_EAR: (0.98, 0.05), L_EAR: (-0.98, 0.05)}
    (near_eye, near_ear), far = ((R_EYE, R_EAR), (L_EYE, L_EAR)) if facing > 0 else ((L_EYE, L_EAR), (R_EYE, R_EAR))
    return {NOSE: (facing * 0.98, 0.25), near_eye: (facing * 0.6, -0.1), near_ear: (-facing * 0.15, 0.05),
            far[0]: (0, 0), far[1]: (0, 0)}


def toy_pose(identity: Identity, pose: str, rng: np.random.Generator,
             height: int = 128, width: int = 64) -> tuple[np.ndarray, str]:
    """Float keypoints (18, 2) of (y, x) in a ``height`` x ``width`` frame, and the view.

    The view is "front", "back", "side_left" or "side_right". No joint is marked missing here.
    """
    if pose not in POSES:
        raise ValueError(f"unknown toy pose {pose!r}; choose from {POSES}")
    j = lambda sd: float(rng.normal(0.0, sd))  # noqa: E731 - angle jitter in degrees
    hgt = identity.height
    view = {"side_left": "side_left", "side_right": "side_right", "back": "back"}.get(pose, "front")
    side = view.startswith("side")
    facing = -1.0 if view == "side_left" else 1.0  # image direction the person faces in a side view
    # Image-x sign of the person's right and left sides (front view: their right is image left;
    # side view: the near side is drawn in front, facing +x shows the right side).
    if side:
        s_right, s_left = facing, -facing
    else:
        s_right, s_left = (1.0, -1.0) if view == "back" else (-1.0, 1.0)
    sw, hw = (1.5, 1.2) if side else (identity.shoulder, identity.hip)

    kp = np.zeros((NUM_JOINTS, 2))  # (x, y), hip centre at the origin, y down
    lean = j(1.5) if not side else facing * abs(j(3.0))
    torso = 0.30 * hgt
    neck = np.array([math.sin(math.radians(lean)) * torso, -torso])
    kp[NECK] = neck
    kp[R_SHOULDER], kp[L_SHOULDER] = neck + [s_right * sw, 0.03 * hgt], neck + [s_left * sw, 0.03 * hgt]
    kp[R_HIP], kp[L_HIP] = [s_right * hw, 0.0], [s_left * hw, 0.0]
    arms, legs = _limb_angles(pose, side, j, rng)
    arm, leg = (0.16 * hgt, 0.145 * hgt), (0.245 * hgt, 0.235 * hgt)
    for root, middle, end, s, (a_first, a_second), (first, second) in (
            (R_SHOULDER, R_ELBOW, R_WRIST, s_right, arms["r"], arm),
            (L_SHOULDER, L_ELBOW, L_WRIST, s_left, arms["l"], arm),
            (R_HIP, R_KNEE, R_ANKLE, s_right, legs["r"], leg),
            (L_HIP, L_KNEE, L_ANKLE, s_left, legs["l"], leg)):
        sign = facing if side else s  # in side views "forward" is the facing direction
        kp[middle] = kp[root] + first * _direction(sign * a_first)
        kp[end] = kp[middle] + second * _direction(sign * a_second)
    head_up, r = 0.105 * hgt, 0.062 * hgt
    centre = neck + [math.sin(math.radians(lean)) * head_up, -head_up]
    for joint, offset in _face(view, facing).items():
        kp[joint] = centre + np.array(offset) * r

    # Place the body: lowest ankle on the ground, centred with jitter, scaled to the frame.
    scale = height / _REF_HEIGHT
    ground = _REF_HEIGHT - 4.0 + j(1.2)
    cx = _REF_HEIGHT / 4 + j(1.5)
    kp[:, 1] += ground - 0.02 * hgt - kp[[R_ANKLE, L_ANKLE], 1].max()
    kp[:, 0] += cx
    kp *= scale
    kp[:, 0] += (width - _REF_HEIGHT / 2 * scale) / 2  # centre in frames of another aspect
    return kp[:, ::-1].copy(), view  # (y, x)


class _Layer:
    """A person drawn at supersampled resolution: colour (on black) and coverage."""

    def __init__(self, height: int, width: int, scale: float):
        self.k, self.scale = _SUPERSAMPLE, scale  # scale: frame pixels per pixel of the 128-high body model
        self.colour = Image.new("RGB", (width * self.k, height * self.k))
        self.mask = Image.new("L", (width * self.k, height * self.k))
        self._draws = (ImageDraw.Draw(self.colour), ImageDraw.Draw(self.mask))

    def _xy(self, yx) -> tuple[float, float]:
        return (float(yx[1]) + 0.5) * self.k, (float(yx[0]) + 0.5) * self.k

    def _w(self, width: float) -> float:
        return width * self.scale * self.k

    def limb(self, a, b, width: float, colour) -> None:
        w = self._w(width)
        for draw, fill in zip(self._draws, (colour, 255)):
            draw.line([self._xy(a), self._xy(b)], fill=fill, width=max(1, round(w)))
            for p in (a, b):
                x, y = self._xy(p)
                draw.ellipse([x - w / 2, y - w / 2, x + w / 2, y + w / 2], fill=fill)

    def ellipse(self, centre, ry: float, rx: float, colour) -> None:
        x, y = self._xy(centre)
        ry, rx = self._w(ry), self._w(rx)
        for draw, fill in zip(self._draws, (colour, 255)):
            draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=fill)

    def polygon(self, points, colour) -> None:
        xy = [self._xy(p) for p in points]
        for draw, fill in zip(self._draws, (colour, 255)):
            draw.polygon(xy, fill=fill)

    def downsampled(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(premultiplied colour (H, W, 3), coverage (H, W, 1)), both in [0, 1]."""
        colour = np.asarray(self.colour.resize((width, height), Image.BOX), dtype=np.float32) / 255
        mask = np.asarray(self.mask.resize((width, height), Image.BOX), dtype=np.float32) / 255
        return colour, mask[..., None]


def _shade(colour, factor: float) -> tuple[int, int, int]:
    return tuple(int(c * factor) for c in colour)


class _Person:
    """One identity at float keypoints (18, 2) of (y, x), drawn part by part onto a layer."""

    def __init__(self, layer: _Layer, identity: Identity, kp: np.ndarray, view: str):
        self.layer, self.ident, self.kp, self.view = layer, identity, kp, view
        self.side = view.startswith("side")
        self.facing = -1.0 if view == "side_left" else 1.0
        self.mid_hip = (kp[R_HIP] + kp[L_HIP]) / 2
        up = kp[NECK] - self.mid_hip
        up = up / max(np.linalg.norm(up), 1e-6)
        self.head = kp[NECK] + up * 0.105 * identity.height * layer.scale  # as laid out by toy_pose

    def leg(self, hip, knee, ankle, shade: float) -> None:
        kp, ident, limb = self.kp, self.ident, self.layer.limb
        bottom, skin, shoes = (_shade(c, shade) for c in (ident.bottom, ident.skin, ident.shoes))
        if ident.shorts:
            cut = kp[hip] + 0.55 * (kp[knee] - kp[hip])
            limb(kp[knee], kp[ankle], ident.leg_width * 0.8, skin)
            limb(cut, kp[knee], ident.leg_width * 0.85, skin)
            limb(kp[hip], cut, ident.leg_width * 1.1, bottom)
        else:
            limb(kp[hip], kp[knee], ident.leg_width, bottom)
            limb(kp[knee], kp[ankle], ident.leg_width * 0.9, bottom)
        h, s = ident.height, self.layer.scale
        toe = kp[ankle] + np.array([0.015, 0.05 * self.facing if self.side else 0.0]) * h * s
        limb(kp[ankle] + [0.01 * h * s, 0], toe, ident.leg_width * 0.75, shoes)

    def arm(self, shoulder, elbow, wrist, shade: float) -> None:
        kp, ident = self.kp, self.ident
        top, skin = _shade(ident.top, shade), _shade(ident.skin, shade)
        self.layer.limb(kp[shoulder], kp[elbow], ident.arm_width * 1.1, top)
        self.layer.limb(kp[elbow], kp[wrist], ident.arm_width, top if ident.long_sleeves else skin)
        self.layer.ellipse(kp[wrist], ident.arm_width * 0.7, ident.arm_width * 0.7, skin)

    def torso(self) -> None:
        kp, ident, s = self.kp, self.ident, self.layer.scale
        if self.side:  # a slab around the neck-hip axis, as deep as the chest
            axis = self.mid_hip - kp[NECK]
            normal = np.array([axis[1], -axis[0]]) / max(np.linalg.norm(axis), 1e-6)
            top = kp[NECK] + axis * 0.06
            chest, waist = 0.075 * ident.height * s, 0.065 * ident.height * s
            shoulders = (top + normal * chest, top - normal * chest)
            hips = (self.mid_hip + normal * waist, self.mid_hip - normal * waist)
        else:
            rs, ls, rh, lh = kp[R_SHOULDER], kp[L_SHOULDER], kp[R_HIP], kp[L_HIP]
            out = lambda p, q, amount: p + (p - q) / max(np.linalg.norm(p - q), 1e-6) * amount * s  # noqa: E731
            shoulders = (out(rs, ls, ident.arm_width * 0.3), out(ls, rs, ident.arm_width * 0.3))
            hips = (out(rh, lh, ident.leg_width * 0.45), out(lh, rh, ident.leg_width * 0.45))
        self.layer.polygon([shoulders[0], shoulders[1], hips[1], hips[0]], ident.top)
        lerp = lambda t: (shoulders[0] + t * (hips[0] - shoulders[0]),  # noqa: E731
                          shoulders[1] + t * (hips[1] - shoulders[1]))
        if ident.stripe is not None:
            (a0, a1), (b0, b1) = lerp(0.32), lerp(0.47)
            self.layer.polygon([a0, a1, b1, b0], ident.stripe)
        w0, w1 = lerp(0.86)
        drop = np.array([0.05 * ident.height * s, 0.0])
        self.layer.polygon([w0, w1, hips[1] + drop, hips[0] + drop], ident.bottom)

    def head_shapes(self) -> None:
        kp, ident, head, s, f = self.kp, self.ident, self.head, self.layer.scale, self.facing
        r, ellipse = 0.062 * ident.height, self.layer.ellipse
        if ident.long_hair:  # behind the neck and the face
            hang = head + np.array([1.7 * r * s, -0.15 * r * s * (f if self.side else 0)])
            self.layer.limb(head, hang, 2.0 * r, ident.hair)
        self.layer.limb(kp[NECK], kp[NECK] + (head - kp[NECK]) * 0.6, r * 0.8, ident.skin)
        if self.view == "back":
            ellipse(head, r * 1.08, r * 1.02, ident.hair)
        elif self.side:
            ellipse(head + np.array([0.08 * r, f * 0.12 * r]) * s, r * 0.95, r * 0.9, ident.skin)
            ellipse(head + np.array([-0.3 * r, -f * 0.22 * r]) * s, r * 0.85, r * 0.85, ident.hair)
            ellipse(head + np.array([-0.1 * r, f * 0.6 * r]) * s, r * 0.12, r * 0.12, (30, 25, 25))
        else:
            ellipse(head + np.array([-0.3 * r, 0.0]) * s, r * 0.85, r * 1.06, ident.hair)
            ellipse(head + np.array([0.12 * r, 0.0]) * s, r * 0.9, r * 0.9, ident.skin)
            for e in (-0.38, 0.38):
                ellipse(head + np.array([-0.08 * r, e * r]) * s, r * 0.12, r * 0.12, (30, 25, 25))


def draw_person(layer: _Layer, identity: Identity, kp: np.ndarray, view: str) -> None:
    """Draw the person of ``identity`` with float keypoints ``kp`` (18, 2) of (y, x)."""
    p = _Person(layer, identity, kp, view)
    right = ((R_SHOULDER, R_ELBOW, R_WRIST), (R_HIP, R_KNEE, R_ANKLE))
    left = ((L_SHOULDER, L_ELBOW, L_WRIST), (L_HIP, L_KNEE, L_ANKLE))
    if p.side:  # far limbs shaded behind the torso; facing +x shows the right side
        (near_arm, near_leg), (far_arm, far_leg) = (right, left) if p.facing > 0 else (left, right)
        p.arm(*far_arm, 0.78)
        p.leg(*far_leg, 0.78)
        p.torso()
        p.leg(*near_leg, 1.0)
        p.head_shapes()
        p.arm(*near_arm, 1.0)
    else:
        p.leg(*right[1], 1.0)
        p.leg(*left[1], 1.0)
        p.torso()
        p.head_shapes()
        p.arm(*right[0], 1.0)
        p.arm(*left[0], 1.0)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A street-like backdrop: vertical gradient, a floor, a few soft blocks, noise; (H, W, 3) in [0, 1]."""
    base = rng.random()
    c_top = np.array(_rgb(base + 0.1 * rng.standard_normal(), 0.1 + 0.3 * rng.random(), 0.4 + 0.5 * rng.random()))
    c_mid = np.array(_rgb(base + 0.3 * rng.standard_normal(), 0.1 + 0.3 * rng.random(), 0.3 + 0.5 * rng.random()))
    c_floor = np.array(_rgb(rng.random(), 0.05 + 0.2 * rng.random(), 0.25 + 0.5 * rng.random()))
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    img = np.broadcast_to((1 - t) * c_top + t * c_mid, (height, width, 3)).copy()
    for _ in range(rng.integers(0, 4)):  # wall panels, windows, passers-by blur
        y0, x0 = rng.integers(0, height * 3 // 4), rng.integers(-width // 4, width)
        h, w = rng.integers(height // 8, height // 2), rng.integers(width // 8, width // 2)
        colour = np.array(_rgb(rng.random(), 0.1 + 0.4 * rng.random(), 0.3 + 0.6 * rng.random()))
        alpha = 0.3 + 0.4 * rng.random()
        ys, xs = slice(max(y0, 0), y0 + h), slice(max(x0, 0), max(x0 + w, 0))
        img[ys, xs] = (1 - alpha) * img[ys, xs] + alpha * colour
    floor = int(height * rng.uniform(0.72, 0.9))
    img[floor:] = 0.4 * img[floor:] + 0.6 * c_floor
    return img / 255.0 + rng.normal(0.0, 0.025, size=img.shape)


def render(identity: Identity, kp: np.ndarray, view: str, rng: np.random.Generator,
           height: int, width: int) -> Image.Image:
    """The image of ``identity`` at keypoints ``kp`` over a random background."""
    layer = _Layer(height, width, height / _REF_HEIGHT)
    draw_person(layer, identity, kp, view)
    colour, mask = layer.downsampled(height, width)
    img = _background(rng, height, width) * (1 - mask) + colour
    img = img + rng.normal(0.0, 0.01, size=img.shape)  # sensor noise over everything
    return Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))


def _annotate(kp: np.ndarray, view: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Integer keypoints as a detector would report them: hidden joints and a few misses -> -1."""
    out = np.rint(kp).astype(np.int64)
    hidden = {"back": [NOSE, R_EYE, L_EYE], "side_right": [L_EYE, L_EAR], "side_left": [R_EYE, R_EAR]}.get(view, [])
    if rng.random() < 0.15:  # a detector misses a limb end or an ear now and then
        optional = [R_ELBOW, R_WRIST, L_ELBOW, L_WRIST, R_KNEE, R_ANKLE, L_KNEE, L_ANKLE, R_EAR, L_EAR]
        hidden += list(rng.choice(optional, size=rng.integers(1, 3), replace=False))
    if rng.random() < 0.04:  # ... or a shoulder/hip, which removes the image from the pairs
        hidden.append(int(rng.choice([R_SHOULDER, L_SHOULDER, R_HIP, L_HIP])))
    outside = (out[:, 0] < 0) | (out[:, 0] >= height) | (out[:, 1] < 0) | (out[:, 1] >= width)
    out[outside] = MISSING
    out[hidden] = MISSING
    return out


def make_toy_dataset(out: str | Path, seed: int = 0, identities: int = 40, test_identities: int = 10,
                     poses: int = 8, test_pairs: int = 200, height: int = 128, width: int = 64,
                     quality: int = 92, progress: bool = False) -> dict:
    """Write the toy dataset into ``out``; returns counts {split: {"images", "pairs"}}."""
    if identities < 1 or test_identities < 1 or poses < 2:
        raise ValueError("need at least one identity per split and two poses per identity")
    out = Path(out)
    counts = {}
    splits = {"train": range(1, identities + 1),
              "test": range(identities + 1, identities + test_identities + 1)}
    for split, person_ids in splits.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        annotations = {}
        for pid in progress_bar(person_ids, desc=f"toy {split}", disable=not progress, leave=False):
            identity = Identity.sample(np.random.default_rng([seed, pid, 0]))
            order = np.random.default_rng([seed, pid, 1]).permutation(len(POSES))
            for k in range(poses):
                rng = np.random.default_rng([seed, pid, 2, k])
                pose = POSES[order[k % len(POSES)]]
                kp, view = toy_pose(identity, pose, rng, height, width)
                name = f"{pid:04d}_c{k % 6 + 1}s1_{pid * 100 + k:06d}_00.jpg"
                render(identity, kp, view, rng, height, width).save(out / split / name, quality=quality)
                annotations[name] = _annotate(kp, view, rng, height, width)
        write_annotations(out / f"market-annotation-{split}.csv", annotations)
        pairs = build_pairs(annotations)
        if split == "test" and len(pairs) > test_pairs:
            pick = np.random.default_rng([seed, 3]).choice(len(pairs), size=test_pairs, replace=False)
            pairs = [pairs[i] for i in pick]
        write_pairs(out / f"market-pairs-{split}.csv", pairs)
        counts[split] = {"images": len(annotations), "pairs": len(pairs)}
    return counts
