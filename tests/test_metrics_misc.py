"""PSNR, L1, PCKh, the protocol steps (8-bit truncation, JPEG round trip, white padding) and each
protocol's SSIM against the scikit-image call it documents."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from xinggan.metrics.l1 import l1_distance, to_signed_unit
from xinggan.metrics.pckh import pckh, pckh_pair
from xinggan.metric_registry import METRICS, get_protocol
from xinggan.metrics.preprocess import jpeg_roundtrip, pad_white_columns, released_8bit
from xinggan.metrics.psnr import psnr
from xinggan.visualize import to_uint8


def test_psnr_matches_scikit_image():
    rng = np.random.default_rng(0)
    gen = rng.integers(0, 256, size=(3, 16, 8, 3), dtype=np.uint8)
    tgt = rng.integers(0, 256, size=(3, 16, 8, 3), dtype=np.uint8)
    unit = lambda x: torch.from_numpy(x.astype(np.float32) / np.float32(255)).permute(0, 3, 1, 2)  # noqa: E731
    ours = psnr(unit(gen), unit(tgt)).numpy()
    ref = [peak_signal_noise_ratio(t.astype(np.float32) / np.float32(255), g.astype(np.float32) / np.float32(255),
                                   data_range=1) for g, t in zip(gen, tgt)]
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_l1_in_signed_unit_space():
    gen = torch.tensor([[[[0, 255]]]], dtype=torch.uint8).expand(1, 3, 1, 2)
    tgt = torch.tensor([[[[255, 255]]]], dtype=torch.uint8).expand(1, 3, 1, 2)
    # |-1 - 1| = 2 on half the pixels.
    assert l1_distance(to_signed_unit(gen), to_signed_unit(tgt)).item() == pytest.approx(1.0)


def pose(**joints):
    kp = np.full((18, 2), -1)
    for index, yx in joints.items():
        kp[int(index[1:])] = yx
    return kp


def test_pckh_rule():
    # Head box from joints 0, 1, 14: height 10 (rows 20..30), width 8 (cols 30..38).
    target = pose(j0=(20, 34), j1=(30, 34), j14=(22, 38), j15=(22, 30), j2=(35, 20), j3=(50, 20))
    detected = target.copy()
    detected[2] = (35 + 4, 20 + 3)    # |dy| 4 < 5, |dx| 3 < 4: correct
    detected[3] = (50, 20 + 4)        # |dx| = 4 is not < 4: wrong (strict)
    detected[15] = (-1, -1)           # not detected
    detected[5] = (40, 40)            # no target joint: not counted
    assert pckh_pair(detected, target) == (4, 6)
    # Fewer than 2 head joints in the target: the pair is skipped entirely.
    lonely = pose(j0=(20, 34), j2=(35, 20))
    assert pckh_pair(lonely, lonely) is None
    result = pckh([detected, lonely], [target, lonely])
    assert result == {"score": 4 / 6, "correct": 4, "total": 6, "scored_pairs": 1, "skipped_pairs": 1}


def test_to_uint8_truncates():
    x = torch.tensor([-1.0, 0.0, 0.999, 1.0, 1.5]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    out = to_uint8(x)
    assert out.shape == (1, 1, 5, 3) and out.dtype == np.uint8
    # (0 + 1) / 2 * 255 = 127.5 -> 127; (0.999 + 1) / 2 * 255 = 254.87 -> 254; clipped above.
    assert out[0, 0, :, 0].tolist() == [0, 127, 254, 255, 255]


def test_released_8bit_conversion_of_targets():
    """Dataset image -> ToTensor -> Normalize(0.5, 0.5) -> tensor2im, as the released test code did."""
    from torchvision import transforms

    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    image = Image.fromarray(np.stack([values] * 3, axis=2))
    tensor = transforms.Normalize((0.5,) * 3, (0.5,) * 3)(transforms.ToTensor()(image))
    expected = ((np.transpose(tensor.numpy(), (1, 2, 0)) + 1) / 2.0 * 255.0).astype(np.uint8)
    ours = released_8bit(np.asarray(image))
    np.testing.assert_array_equal(ours, expected)
    changed = np.unique(np.asarray(image)[ours != np.asarray(image)])
    assert changed.tolist() == list(range(1, 64))  # float32 rounding pulls 1..63 down by one


def test_jpeg_roundtrip_equals_pil_default_save(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(2, 32, 16, 3), dtype=np.uint8)
    ours = jpeg_roundtrip(images)
    for image, decoded in zip(images, ours):
        path = tmp_path / "x.jpg"
        Image.fromarray(image).save(path)  # PIL's default quality, as the released test code saved
        np.testing.assert_array_equal(decoded, np.asarray(Image.open(path).convert("RGB")))
    assert not np.array_equal(ours, images)


def test_white_padding():
    images = np.zeros((1, 4, 3, 3), dtype=np.uint8)
    padded = pad_white_columns(images, 40)
    assert padded.shape == (1, 4, 83, 3)
    assert (padded[:, :, :40] == 255).all() and (padded[:, :, 43:] == 255).all() and (padded[:, :, 40:43] == 0).all()


def _pairs(seed: int, h: int, w: int) -> tuple:
    """Two smooth random uint8 batches (2, H, W, 3), the second a noisy copy of the first, so
    that SSIM lies well inside (0, 1)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.normal(size=(2, h, w, 3)), sigma=(0, 2, 2, 0))
    generated = np.clip(128 + 400 * smooth, 0, 255)
    target = np.clip(generated + rng.normal(scale=25, size=generated.shape), 0, 255)
    return generated.astype(np.uint8), target.astype(np.uint8)


def _protocol_ssim(protocol, generated: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-pair SSIM under ``protocol`` from the evaluation's SSIM accumulator (its settings and
    ``ssim_input``), on unpadded uint8 images."""
    from xinggan.metrics.accumulators import SSIMAccumulator
    from xinggan.metrics.inputs import Batch

    g, t = (torch.from_numpy(x).permute(0, 3, 1, 2) for x in (generated, target))
    accumulator = SSIMAccumulator(METRICS["ssim"], len(generated), protocol)
    accumulator.update(Batch(0, len(generated), generated, g, t, g, t))
    return accumulator.scores


@pytest.mark.parametrize("name", ["patn-market", "patn-deepfashion", "toy"])
def test_patn_protocols_compute_the_released_scikit_image_call(name, monkeypatch):
    """The released scripts called ``compare_ssim(target, generated, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, multichannel=True, data_range=generated.max() -
    generated.min())`` on uint8 images, under scikit-image 0.14.2, whose Gaussian was scipy's
    with its default truncate=4.0. Current scikit-image makes the same call with truncate=3.5;
    restoring 4.0 in its filter gives the 0.14.2 computation."""
    import skimage.metrics._structural_similarity as skimage_ssim
    from scipy import ndimage

    def gaussian_0_14(image, sigma, truncate, mode):
        return ndimage.gaussian_filter(image, sigma=sigma, mode=mode)  # scipy's default truncate=4.0

    monkeypatch.setattr(skimage_ssim, "gaussian", gaussian_0_14)
    protocol = get_protocol(name)
    generated, target = _pairs(0, 48, 40)
    reference = [structural_similarity(t, g, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                       channel_axis=-1, data_range=float(g.max()) - float(g.min()))
                 for g, t in zip(generated, target)]
    np.testing.assert_allclose(_protocol_ssim(protocol, generated, target), reference, rtol=0, atol=1e-9)
    assert 0.05 < min(reference) and max(reference) < 0.95


def test_gfla_protocol_computes_the_window_51_call():
    """GFLA-era scripts: ``compare_ssim(gt, pred, data_range=1, win_size=51, multichannel=True)``
    on ``float32(uint8) / 255`` images (uniform window, sample covariance)."""
    protocol = get_protocol("gfla")
    generated, target = _pairs(1, 64, 56)
    unit = lambda x: x.astype(np.float32) / np.float32(255)  # noqa: E731
    reference = [structural_similarity(unit(t), unit(g), data_range=1, win_size=51, channel_axis=-1)
                 for g, t in zip(generated, target)]
    np.testing.assert_allclose(_protocol_ssim(protocol, generated, target), reference, rtol=0, atol=1e-6)


def test_deepfashion_padding_restores_the_square_originals():
    # The released DeepFashion script padded the 256 x 176 crops back to the 256 x 256 In-shop size.
    padded = pad_white_columns(np.zeros((1, 256, 176, 3), np.uint8), get_protocol("patn-deepfashion").pad_columns)
    assert padded.shape == (1, 256, 256, 3)
    assert get_protocol("patn-market").pad_columns == 0


def test_patn_defaults_are_the_columns_of_the_papers_table():
    # XingGAN's Table 1: Market SSIM, IS, mask-SSIM, mask-IS, PCKh; DeepFashion SSIM, IS, PCKh.
    assert set(get_protocol("patn-market").default_metrics) == {"ssim", "is", "mask_ssim", "mask_is", "pckh"}
    assert set(get_protocol("patn-deepfashion").default_metrics) == {"ssim", "is", "pckh"}


def test_unknown_protocol_names_the_protocols():
    with pytest.raises(ValueError, match="patn-market"):
        get_protocol("patn")
