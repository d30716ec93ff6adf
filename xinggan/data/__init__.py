"""Data layer: annotation/pair files, pose heatmaps, the paired dataset and the training sampler."""
from .annotations import (
    ANNOTATION_HEADER,
    FLIP_PERMUTATION,
    JOINT_NAMES,
    MISSING,
    NUM_JOINTS,
    PAIRS_HEADER,
    TORSO_JOINTS,
    DataError,
    build_pairs,
    deepfashion_flat_name,
    person_id,
    read_annotations,
    read_pairs,
    write_annotations,
    write_pairs,
)
