"""Data layer of training and testing: annotation and pair files, result names, pose heatmaps,
:class:`PairDataset`, :func:`model_inputs` and the resumable :class:`IterationSampler`.
"""
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
from .dataset import PairDataset, model_inputs
from .heatmaps import pose_heatmaps
from .pairs import PAIR_SEPARATOR, result_stem
from .sampler import OFFICIAL_EPOCH_PAIRS, IterationSampler, official_epoch_iterations

__all__ = [
    "ANNOTATION_HEADER", "FLIP_PERMUTATION", "JOINT_NAMES", "MISSING", "NUM_JOINTS", "PAIRS_HEADER",
    "TORSO_JOINTS", "OFFICIAL_EPOCH_PAIRS", "PAIR_SEPARATOR", "DataError", "IterationSampler", "PairDataset",
    "build_pairs", "deepfashion_flat_name", "model_inputs", "official_epoch_iterations",
    "person_id", "pose_heatmaps", "read_annotations", "read_pairs", "result_stem", "write_annotations",
    "write_pairs",
]
