"""The per-metric accumulators of a folder evaluation, on batches with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xinggan.data import read_annotations
from xinggan.metric_registry import METRICS
from xinggan.metrics.accumulators import (InceptionScoreAccumulator, L1Accumulator, LPIPSAccumulator,
                                          PCKhAccumulator)
from xinggan.metrics.inputs import Batch
from xinggan.metrics.preprocess import jpeg_roundtrip


def constant_batch(start: int, generated_values, target_values, height=8, width=4,
                   masks: torch.Tensor = None) -> Batch:
    """Pairs whose images are flat grey: pair i of the batch is generated_values[i] vs target_values[i]."""
    def images(values):
        return np.stack([np.full((height, width, 3), v, dtype=np.uint8) for v in values])

    gen, tgt = images(generated_values), images(target_values)
    gen_t = torch.from_numpy(gen).permute(0, 3, 1, 2).contiguous()
    tgt_t = torch.from_numpy(tgt).permute(0, 3, 1, 2).contiguous()
    return Batch(start, start + len(gen), gen, gen_t, tgt_t, gen_t, tgt_t, masks, masks)


def test_batches_fill_their_own_rows_in_any_order():
    # Pair i: generated 0, target 51 * i, so L1 in [-1, 1] units is 51 * i / 127.5 = 0.4 * i.
    accumulator = L1Accumulator(METRICS["l1"], 5)
    accumulator.update(constant_batch(3, [0, 0], [153, 204]))
    accumulator.update(constant_batch(0, [0, 0, 0], [0, 51, 102]))
    np.testing.assert_allclose(accumulator.scores, [0.0, 0.4, 0.8, 1.2, 1.6], rtol=0, atol=1e-7)
    assert accumulator.result() == {"l1": pytest.approx(0.8, abs=1e-7)}


def magnitude_sum(generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A stand-in for the LPIPS network: sum of |generated| + |target| per pair, which shows the
    scale the images arrive in and where masked-out values land."""
    return (generated.abs() + target.abs()).flatten(1).sum(dim=1).to(torch.float64)


def test_lpips_sees_signed_images_and_masked_lpips_zeroes_them_outside_the_mask():
    # White vs black: +1 and -1 in [-1, 1], so each of the 3 x 8 x 4 values adds 2.
    masks = torch.zeros(1, 1, 8, 4, dtype=torch.bool)
    masks[..., :3, :] = True  # 12 of 32 pixels
    batch = constant_batch(0, [255], [0], masks=masks)
    plain = LPIPSAccumulator(METRICS["lpips"], 1, magnitude_sum)
    masked = LPIPSAccumulator(METRICS["mask_lpips"], 1, magnitude_sum)
    plain.update(batch)
    masked.update(batch)
    assert plain.result() == {"lpips": 2.0 * 3 * 32}
    # The mask multiplies the [-1, 1] images (GFLA's mask-LPIPS): outside it both are 0, not -1.
    assert masked.result() == {"mask_lpips": 2.0 * 3 * 12}


class ClassOfGrey(torch.nn.Module):
    """A stand-in for the TF Inception: image of grey level k -> logits 50 on class k, 0 elsewhere."""

    def forward(self, images: torch.Tensor) -> dict:
        logits = torch.zeros(len(images), 1008, dtype=torch.float64)
        logits[torch.arange(len(images)), images[:, 0, 0, 0].long()] = 50.0
        return {"logits_unbiased": logits}


def test_inception_score_of_two_confident_classes_per_split_is_two():
    # 20 images, 10 contiguous splits of 2: each split holds classes 3 and 7, one image each, so
    # p(y) = (1/2, 1/2), KL(p(y|x) || p(y)) = log 2 and IS = 2 in every split.
    accumulator = InceptionScoreAccumulator(METRICS["is"], 20, ClassOfGrey())
    levels = [3, 7] * 10
    for start in range(0, 20, 6):
        part = levels[start:start + 6]
        accumulator.update(constant_batch(start, part, part))
    result = accumulator.result()
    assert result["is"] == pytest.approx(2.0, abs=1e-9) and result["is_std"] == pytest.approx(0.0, abs=1e-9)


def test_mask_inception_score_scores_the_masked_generated_image():
    # A mask of nothing turns every generated image black (class 0): one class, IS = 1.
    accumulator = InceptionScoreAccumulator(METRICS["mask_is"], 10, ClassOfGrey())
    masks = torch.zeros(10, 1, 8, 4, dtype=torch.bool)
    accumulator.update(constant_batch(0, [3, 7] * 5, [0] * 10, masks=masks))
    assert accumulator.result()["mask_is"] == pytest.approx(1.0, abs=1e-9)


def test_pckh_detects_on_the_resaved_images_and_writes_the_detections(tmp_path):
    rng = np.random.default_rng(0)
    targets = np.stack([np.stack([rng.integers(10, 100, 18), rng.integers(5, 60, 18)], axis=1) for _ in range(3)])
    targets[:, [0, 1, 14]] = [(15, 30), (30, 32), (12, 27)]  # a head box
    batch = constant_batch(0, [10, 20, 30], [0, 0, 0])
    batch.generated_rgb = rng.integers(0, 256, (3, 8, 4, 3), dtype=np.uint8)  # JPEG changes these
    seen = []

    class Recorder:
        """Returns the target's joints for the first two images and nothing for the third."""

        def detect(self, image):
            seen.append(image)
            return targets[len(seen) - 1] if len(seen) < 3 else np.full((18, 2), -1)

    csv = tmp_path / "detected.csv"
    accumulator = PCKhAccumulator(METRICS["pckh"], targets, detector=Recorder(), resave_jpeg=True, pose_weights="w/body.pth",
                                  detections_csv=csv, generated_names=["a.png", "b.png", "c.png"])
    assert accumulator.streams
    accumulator.update(batch)
    result, details = accumulator.result(), accumulator.details()
    np.testing.assert_array_equal(np.stack(seen), jpeg_roundtrip(batch.generated_rgb))
    present = [int((t[:, 0] != -1).sum()) for t in targets]
    assert result == {"pckh": pytest.approx((present[0] + present[1]) / sum(present))}
    assert details["pckh_detector"] == "openpose (body.pth)" and details["pckh_detections"] == str(csv)
    assert details["pckh"]["scored_pairs"] == 3
    stored = read_annotations(csv)
    assert sorted(stored) == ["a.png", "b.png", "c.png"]
    np.testing.assert_array_equal(stored["a.png"], targets[0])


def test_pckh_from_a_csv_reads_no_images():
    targets = np.zeros((1, 18, 2), dtype=int)
    accumulator = PCKhAccumulator(METRICS["pckh"], targets, detections=[targets[0]])
    assert not accumulator.streams
    with pytest.raises(ValueError, match="either"):
        PCKhAccumulator(METRICS["pckh"], targets)
