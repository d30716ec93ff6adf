"""The 18 body joints of a pose, in OpenPose's COCO-18 order, and the limbs that join them.

A pose is an ``(18, 2)`` array of ``(y, x)`` pixels, in the order of the Market-1501 and
DeepFashion annotation files; right and left are the person's own. (PATN's tool code labels
joints 14-17 with left and right swapped; the names here follow the stored coordinates.)
Limbs are 0-based ``(joint, joint)`` pairs. This module imports nothing, so any layer may read it.
"""
from __future__ import annotations

__all__ = ["FLIP_PERMUTATION", "JOINT_COLOURS", "JOINT_NAMES", "MASK_LIMBS", "NUM_JOINTS", "OPENPOSE_LIMBS",
           "SKELETON_LIMBS", "TORSO_JOINTS"]

NUM_JOINTS = 18

JOINT_NAMES = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
               "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
               "right_eye", "left_eye", "right_ear", "left_ear")
# Joint index each joint becomes under a horizontal flip (left and right swap).
FLIP_PERMUTATION = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16)
# Both shoulders and both hips: an image is usable in a Market training pair only with all four.
TORSO_JOINTS = (2, 5, 8, 11)

# OpenPose's 19 limbs in the order of its part affinity fields (the keypoint post-processing
# pairs limb k with PAF_CHANNELS[k]): neck to shoulders, arms, neck to hips, legs, neck to nose,
# nose to eyes to ears, then the shoulder-ear links.
OPENPOSE_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
    (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
)
# The drawn skeleton (xinggan.visualize): OpenPose's limbs without the shoulder-ear links.
SKELETON_LIMBS = OPENPOSE_LIMBS[:17]
# The pairs of the pose mask (mask-SSIM / IS / LPIPS): the skeleton, then neck-ears, the hips,
# each hip to the shoulder of its side, and the ears (the released 1-based list, minus one).
MASK_LIMBS = SKELETON_LIMBS + ((1, 16), (1, 17), (8, 11), (11, 5), (8, 2), (16, 17))

# OpenPose's drawing colours (RGB, 0-255): joint j and skeleton limb j are drawn in colour j.
JOINT_COLOURS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
