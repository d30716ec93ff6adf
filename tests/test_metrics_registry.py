"""The metric registry: every class, need and settings name it gives resolves, and the tables read it."""
from __future__ import annotations

import inspect

import pytest

from xinggan.metric_registry import METRICS, PAPER_RESULTS, PROTOCOLS, TABLE_ORDER
from xinggan.metrics import accumulators
from xinggan.metrics.ssim import SSIM_SETTINGS
from xinggan.tables import metric_column

NEEDS = {"target_keypoints", "generated_keypoints", "real_images", "inception_splits"}


@pytest.mark.parametrize("name", list(METRICS))
def test_each_entry_names_an_accumulator_and_known_needs(name):
    metric = METRICS[name]
    cls = getattr(accumulators, metric.accumulator)
    assert inspect.isclass(cls) and issubclass(cls, accumulators.Accumulator)
    assert metric.name == name and metric.better in ("higher", "lower")
    assert set(metric.needs) <= NEEDS and metric.network in ("", "tf-inception", "fid-network", "alexnet")
    assert not metric.masked or "target_keypoints" in metric.needs  # the mask is the target's pose


def test_protocols_and_tables_use_registry_names_only():
    assert sorted(TABLE_ORDER) == sorted(METRICS)
    for protocol in PROTOCOLS.values():
        assert set(protocol.default_metrics) <= set(METRICS) and protocol.ssim in SSIM_SETTINGS
    for rows in PAPER_RESULTS.values():
        assert all(set(values) <= set(METRICS) for _, _, values in rows)


def test_tables_take_label_and_direction_from_the_registry():
    column = metric_column("mask_lpips", key="market/mask_lpips", prefix="Market ")
    assert (column.key, column.label, column.better) == ("market/mask_lpips", "Market mask-LPIPS", "lower")

