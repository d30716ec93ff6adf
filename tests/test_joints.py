"""The 18-joint layout and its limb lists (xinggan.joints), checked against facts derived from the
joint names rather than against the lists themselves."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from xinggan import joints
from xinggan.joints import (FLIP_PERMUTATION, JOINT_COLOURS, JOINT_NAMES, MASK_LIMBS, NUM_JOINTS,
                            OPENPOSE_LIMBS, SKELETON_LIMBS, TORSO_JOINTS)

REPO = Path(__file__).resolve().parents[1]
LIMB_LISTS = {"SKELETON_LIMBS": SKELETON_LIMBS, "MASK_LIMBS": MASK_LIMBS, "OPENPOSE_LIMBS": OPENPOSE_LIMBS}
SIDES = ("right", "left")


def index(name: str) -> int:
    return JOINT_NAMES.index(name)


def side_of(name: str) -> str | None:
    """"right" or "left" for a joint of one side, None for the nose and the neck."""
    prefix = name.split("_", 1)[0]
    return prefix if prefix in SIDES else None


def mirrored(name: str) -> str:
    """The name of the same joint on the other side of the body (itself for nose and neck)."""
    side = side_of(name)
    if side is None:
        return name
    other = SIDES[1 - SIDES.index(side)]
    return other + name[len(side):]


def as_edges(limbs) -> set[frozenset]:
    return {frozenset(limb) for limb in limbs}


def test_the_names_are_18_distinct_joints_of_a_body():
    assert NUM_JOINTS == len(JOINT_NAMES) == 18
    assert len(set(JOINT_NAMES)) == NUM_JOINTS
    assert JOINT_NAMES[:2] == ("nose", "neck")
    centre = [n for n in JOINT_NAMES if side_of(n) is None]
    assert centre == ["nose", "neck"]
    for name in JOINT_NAMES:  # every side joint has its partner on the other side
        assert mirrored(name) in JOINT_NAMES, name


@pytest.mark.parametrize("name", sorted(LIMB_LISTS))
def test_every_limb_joins_two_different_joints_in_range_once(name):
    limbs = LIMB_LISTS[name]
    for limb in limbs:
        assert len(limb) == 2, (name, limb)
        a, b = limb
        assert isinstance(a, int) and isinstance(b, int), (name, limb)
        assert 0 <= a < NUM_JOINTS and 0 <= b < NUM_JOINTS, (name, limb)
        assert a != b, (name, limb)
    assert len(as_edges(limbs)) == len(limbs), f"{name} lists a joint pair twice"


@pytest.mark.parametrize("name", sorted(LIMB_LISTS))
def test_no_limb_crosses_from_one_side_of_the_body_to_the_other_but_the_hips_and_the_ears(name):
    crossing = set()
    for a, b in LIMB_LISTS[name]:
        sa, sb = side_of(JOINT_NAMES[a]), side_of(JOINT_NAMES[b])
        if sa and sb and sa != sb:
            crossing.add(frozenset((JOINT_NAMES[a].split("_", 1)[1], JOINT_NAMES[b].split("_", 1)[1])))
    assert crossing <= {frozenset(("hip",)), frozenset(("ear",))}


@pytest.mark.parametrize("name", sorted(LIMB_LISTS))
def test_each_limb_list_is_the_same_under_a_horizontal_flip(name):
    limbs = LIMB_LISTS[name]
    flipped = {frozenset((FLIP_PERMUTATION[a], FLIP_PERMUTATION[b])) for a, b in limbs}
    assert flipped == as_edges(limbs)


def test_flip_permutation_swaps_left_and_right_by_name_and_is_an_involution():
    assert sorted(FLIP_PERMUTATION) == list(range(NUM_JOINTS))
    for j, name in enumerate(JOINT_NAMES):
        assert JOINT_NAMES[FLIP_PERMUTATION[j]] == mirrored(name), name
        assert FLIP_PERMUTATION[FLIP_PERMUTATION[j]] == j
    assert [FLIP_PERMUTATION[j] == j for j in range(NUM_JOINTS)].count(True) == 2  # nose, neck


def test_torso_joints_are_both_shoulders_and_both_hips():
    assert sorted(TORSO_JOINTS) == sorted(index(f"{side}_{part}") for side in SIDES for part in ("shoulder", "hip"))


def expected_skeleton() -> set[frozenset]:
    """The body's tree from the names: neck to nose, shoulders and hips; down each arm and leg;
    nose to each eye to the ear of its side."""
    edges = {("neck", "nose")}
    for side in SIDES:
        edges |= {("neck", f"{side}_shoulder"), (f"{side}_shoulder", f"{side}_elbow"),
                  (f"{side}_elbow", f"{side}_wrist"), ("neck", f"{side}_hip"), (f"{side}_hip", f"{side}_knee"),
                  (f"{side}_knee", f"{side}_ankle"), ("nose", f"{side}_eye"), (f"{side}_eye", f"{side}_ear")}
    return {frozenset((index(a), index(b))) for a, b in edges}


def test_the_drawn_skeleton_is_the_body_tree_over_all_18_joints():
    assert as_edges(SKELETON_LIMBS) == expected_skeleton()
    # One tree: n - 1 edges and every joint reached from the neck.
    assert len(SKELETON_LIMBS) == NUM_JOINTS - 1
    reached, frontier = {index("neck")}, [index("neck")]
    while frontier:
        j = frontier.pop()
        for a, b in SKELETON_LIMBS:
            for here, there in ((a, b), (b, a)):
                if here == j and there not in reached:
                    reached.add(there)
                    frontier.append(there)
    assert reached == set(range(NUM_JOINTS))


def test_one_colour_per_joint():
    assert len(JOINT_COLOURS) == NUM_JOINTS
    assert len(set(JOINT_COLOURS)) == NUM_JOINTS
    for rgb in JOINT_COLOURS:
        assert len(rgb) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in rgb), rgb


def test_the_mask_joins_23_pairs_the_skeleton_and_six_more():
    assert len(MASK_LIMBS) == 23
    assert as_edges(MASK_LIMBS) >= expected_skeleton()
    extra = {frozenset(map(index, pair)) for pair in [
        ("neck", "right_ear"), ("neck", "left_ear"), ("right_hip", "left_hip"), ("left_hip", "left_shoulder"),
        ("right_hip", "right_shoulder"), ("right_ear", "left_ear")]}
    assert as_edges(MASK_LIMBS) - expected_skeleton() == extra


def test_openpose_has_19_limbs_with_a_pair_of_paf_channels_each():
    from xinggan.keypoints.openpose_post import PAF_CHANNELS

    assert len(OPENPOSE_LIMBS) == 19
    shoulder_ear = {frozenset((index(f"{side}_shoulder"), index(f"{side}_ear"))) for side in SIDES}
    assert as_edges(OPENPOSE_LIMBS) == expected_skeleton() | shoulder_ear
    # People are assembled from the first 17 limbs only (the tree); the last two are the extras.
    assert as_edges(OPENPOSE_LIMBS[17:]) == shoulder_ear
    assert len(PAF_CHANNELS) == len(OPENPOSE_LIMBS)
    assert sorted(c for pair in PAF_CHANNELS for c in pair) == list(range(2 * len(OPENPOSE_LIMBS)))


def test_the_other_modules_read_the_one_layout():
    from xinggan.data import annotations
    from xinggan.metrics import mask

    assert annotations.JOINT_NAMES is JOINT_NAMES and annotations.NUM_JOINTS == NUM_JOINTS
    assert annotations.FLIP_PERMUTATION is FLIP_PERMUTATION and annotations.TORSO_JOINTS is TORSO_JOINTS
    assert mask.MASK_LIMBS is MASK_LIMBS


def test_joints_imports_nothing_from_the_package():
    tree = ast.parse((REPO / "xinggan" / "joints.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module.split(".")[0] in ("__future__", "numpy"), node.module
        elif isinstance(node, ast.Import):
            assert all(alias.name.split(".")[0] == "numpy" for alias in node.names)
    code = ("import sys, json, xinggan.joints\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'xinggan')))")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == ["xinggan", "xinggan.joints"]
    assert set(joints.__all__) <= set(vars(joints))
