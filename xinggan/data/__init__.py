"""Data layer: annotation/pair files, pose heatmaps, the paired dataset and the training sampler.

``annotations`` (file formats, Market pair rule, DeepFashion names), ``pairs`` (the
``<from>___<to>`` name of a generated result), ``heatmaps`` (the 18-channel pose input),
``dataset`` (:class:`PairDataset` over the prepared layout), ``sampler``
(:class:`IterationSampler`, the seeded resumable pair stream), ``check`` (whole-dataset
verification), ``prepare`` (raw downloads -> prepared layout) and ``toy`` (the drawn toy set).
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
from .check import check_dataset
from .dataset import PairDataset
from .heatmaps import pose_heatmaps
from .pairs import PAIR_SEPARATOR, result_stem
from .sampler import OFFICIAL_EPOCH_PAIRS, IterationSampler, official_epoch_iterations

__all__ = [
    "ANNOTATION_HEADER", "FLIP_PERMUTATION", "JOINT_NAMES", "MISSING", "NUM_JOINTS", "PAIRS_HEADER",
    "TORSO_JOINTS", "OFFICIAL_EPOCH_PAIRS", "PAIR_SEPARATOR", "DataError", "IterationSampler", "PairDataset",
    "build_pairs", "check_dataset", "deepfashion_flat_name", "official_epoch_iterations",
    "person_id", "pose_heatmaps", "read_annotations", "read_pairs", "result_stem", "write_annotations",
    "write_pairs",
]
