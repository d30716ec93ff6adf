"""Evaluation metrics of XingGAN and the later pose-transfer papers, one file per metric.

The metrics and protocols are listed in :mod:`xinggan.metric_registry`; :func:`evaluate_folder`
(:mod:`.evaluate`) scores a folder of results. Import the rest from the module that defines it.
"""
from .evaluate import evaluate_folder

__all__ = ["evaluate_folder"]
