"""The 18 body joints of a pose, and the ways the package joins them into limbs.

Every pose in the package is an ``(18, 2)`` array of ``(y, x)`` pixels, one row per joint, in
the order of OpenPose's COCO-18 body model (Cao et al., CVPR 2017), which the annotation files of
Market-1501 and DeepFashion follow (:mod:`xinggan.data.annotations`): nose, neck, the right arm
(shoulder, elbow, wrist), the left arm, the right leg (hip, knee, ankle), the left leg, then the
eyes and ears. Right and left are the person's own, so in a front view the right shoulder is on
the image's left. The PATN tool code labels joints 14-17 with left and right swapped; the
stored coordinates put joint 14 on the side of the right shoulder, and the names here follow
the coordinates.

Limbs are ``(joint, joint)`` pairs of 0-based indices. Three lists, each used by one part of
the package and each a fixed fact that its output depends on:

* :data:`OPENPOSE_LIMBS`: the 19 limbs the OpenPose network has a part affinity field for, in
  the network's order; the keypoint post-processing (:mod:`xinggan.keypoints.openpose_post`)
  pairs limb ``k`` with the PAF channels ``PAF_CHANNELS[k]`` and joins people in this order;
* :data:`SKELETON_LIMBS`: the 17 limbs of the drawn pose skeleton (:mod:`xinggan.visualize`),
  the first 17 OpenPose limbs (every one but the two shoulder-ear links); limb ``i`` is drawn
  in :data:`JOINT_COLOURS` ``[i]``. They join the 18 joints into one tree rooted at the neck;
* :data:`MASK_LIMBS`: the 23 joint pairs whose thick segments make the pose mask of the
  mask-SSIM / mask-IS / mask-LPIPS metrics (:mod:`xinggan.metrics.mask`): the skeleton plus
  neck-ears, hip-hip, hip-shoulder on both sides and ear-ear, which fill the torso and head.
  The released mask code lists them 1-based; these are its pairs minus one.

The toy renderer (:mod:`xinggan.prep.toy`) has no limb list: it looks its joints up by name and
draws each body part from them. The MediaPipe detector maps its landmarks to these names.

This module imports nothing (not even from the package), so that any layer may read it.
"""
from __future__ import annotations

__all__ = [
    "FLIP_PERMUTATION",
    "JOINT_COLOURS",
    "JOINT_NAMES",
    "MASK_LIMBS",
    "NUM_JOINTS",
    "OPENPOSE_LIMBS",
    "SKELETON_LIMBS",
    "TORSO_JOINTS",
]

NUM_JOINTS = 18

JOINT_NAMES = (
    "nose", "neck",
    "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
# Joint index each joint becomes under a horizontal flip (left and right swap).
FLIP_PERMUTATION = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16)
# Both shoulders and both hips: an image is usable in a Market training pair only with all four.
TORSO_JOINTS = (2, 5, 8, 11)

# OpenPose's limbs in the order of its part affinity fields: neck to shoulders, arms, neck to
# hips, legs, neck to nose, nose to eyes to ears, then the shoulder-ear links.
OPENPOSE_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
    (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
)
# The drawn skeleton: OpenPose's limbs without the shoulder-ear links.
SKELETON_LIMBS = OPENPOSE_LIMBS[:17]
# The pose mask's joint pairs: the skeleton, then neck-ears, the hips, each hip to the shoulder
# of its side, and the ears.
MASK_LIMBS = SKELETON_LIMBS + ((1, 16), (1, 17), (8, 11), (11, 5), (8, 2), (16, 17))

# OpenPose's drawing colours (RGB, 0-255): joint j and skeleton limb j are drawn in colour j.
JOINT_COLOURS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
