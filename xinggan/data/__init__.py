"""Data layer: what training and testing read.

``annotations`` (file formats, Market pair rule, DeepFashion names), ``pairs`` (the
``<from>___<to>`` name of a generated result), ``heatmaps`` (the 18-channel pose input),
``dataset`` (:class:`PairDataset` over the prepared layout: uint8 images and keypoints;
:func:`model_inputs`, the networks' inputs made on the device) and ``sampler``
(:class:`IterationSampler`, the seeded resumable pair stream). The 18-joint layout lives in
:mod:`xinggan.joints`. The offline tools that make or check a dataset (preparation, the toy set,
whole-dataset verification) are :mod:`xinggan.prep`, which this package never imports.
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
