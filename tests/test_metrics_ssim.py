"""SSIM pinned to scikit-image (11 taps, window 51) and to an independent scipy computation (13 taps)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

from xinggan.metrics.ssim import GFLA_SSIM, PATN_SSIM, SKIMAGE_SSIM, SSIMSettings, filter_operator, ssim


def natural_images(n: int, height: int, width: int, seed: int) -> np.ndarray:
    """uint8 (n, H, W, 3): smooth random fields + a few hard edges + mild noise."""
    rng = np.random.default_rng(seed)
    fields = ndimage.gaussian_filter(rng.normal(size=(n, height, width, 3)), sigma=(0, 5, 5, 0))
    fields = (fields - fields.min()) / (fields.max() - fields.min()) * 180 + 30
    for image in fields:
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        image[top:top + height // 3, left:left + width // 3] += rng.uniform(-60, 60, size=3)
        image[:, rng.integers(1, width - 1):] *= rng.uniform(0.8, 1.2)
    fields += rng.normal(scale=6, size=fields.shape)
    return np.clip(fields, 0, 255).astype(np.uint8)


def as_batch(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def reference_ssim_13_taps(generated: np.ndarray, target: np.ndarray) -> float:
    """scikit-image 0.14.2's algorithm written out with scipy: gaussian_filter(truncate=4.0), crop 5."""
    x = target.astype(np.float64)
    y = generated.astype(np.float64)
    data_range = float(generated.max()) - float(generated.min())
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    per_channel = []
    for ch in range(x.shape[2]):
        a, b = x[..., ch], y[..., ch]
        blur = lambda img: ndimage.gaussian_filter(img, sigma=1.5, truncate=4.0, mode="reflect")  # noqa: E731
        ux, uy = blur(a), blur(b)
        vx = blur(a * a) - ux * ux
        vy = blur(b * b) - uy * uy
        vxy = blur(a * b) - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
        per_channel.append(s[5:-5, 5:-5].mean())
    return float(np.mean(per_channel))


@pytest.mark.parametrize("size", [(128, 64), (37, 29), (200, 48)])  # 4, 1 and 7 row bands
def test_11_taps_matches_current_scikit_image(size):
    gen, tgt = natural_images(4, *size, seed=1), natural_images(4, *size, seed=2)
    ours = ssim(as_batch(gen), as_batch(tgt), SKIMAGE_SSIM).numpy()
    ref = [structural_similarity(t, g, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 channel_axis=-1, data_range=float(g.max()) - float(g.min()))
           for g, t in zip(gen, tgt)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
    assert np.ptp(ref) > 1e-3  # the images really differ from pair to pair


@pytest.mark.parametrize("size", [(128, 64), (31, 40)])
def test_13_taps_matches_scipy_reference(size):
    gen, tgt = natural_images(3, *size, seed=3), natural_images(3, *size, seed=4)
    ours = ssim(as_batch(gen), as_batch(tgt), PATN_SSIM).numpy()
    ref = [reference_ssim_13_taps(g, t) for g, t in zip(gen, tgt)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
    # 13 and 11 taps give different numbers (the paper's values are not current scikit-image's).
    other = ssim(as_batch(gen), as_batch(tgt), SKIMAGE_SSIM).numpy()
    assert np.abs(other - ours).max() > 1e-5


def test_window_51_matches_scikit_image_uniform_filter():
    gen, tgt = natural_images(3, 128, 64, seed=5), natural_images(3, 128, 64, seed=6)
    unit_gen = gen.astype(np.float32) / np.float32(255)
    unit_tgt = tgt.astype(np.float32) / np.float32(255)
    ours = ssim(as_batch(unit_gen), as_batch(unit_tgt), GFLA_SSIM).numpy()
    ref = [structural_similarity(t.astype(np.float64), g.astype(np.float64), win_size=51, channel_axis=-1,
                                 data_range=1.0) for g, t in zip(unit_gen, unit_tgt)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_settings_taps_and_crop():
    assert PATN_SSIM.taps == 13 and PATN_SSIM.crop == 5
    assert SKIMAGE_SSIM.taps == 11 and SKIMAGE_SSIM.crop == 5
    assert GFLA_SSIM.taps == 51 and GFLA_SSIM.crop == 25
    assert GFLA_SSIM.cov_norm == pytest.approx(2601 / 2600)
    with pytest.raises(ValueError):
        SSIMSettings(name="bad", win_size=10)


def test_filter_operator_is_reflect_gaussian():
    # Each row of the operator applied to a signal equals scipy's filter at that position.
    signal = np.random.default_rng(0).normal(size=23)
    op = filter_operator(23, PATN_SSIM).numpy()
    ref = ndimage.gaussian_filter1d(signal, 1.5, truncate=4.0, mode="reflect")[5:-5]
    np.testing.assert_allclose(op @ signal, ref, atol=1e-12)


def test_batch_and_chunks_agree_with_single_pairs():
    gen, tgt = as_batch(natural_images(5, 40, 32, seed=7)), as_batch(natural_images(5, 40, 32, seed=8))
    whole = ssim(gen, tgt, PATN_SSIM, chunk=2)
    single = torch.stack([ssim(g, t, PATN_SSIM)[0] for g, t in zip(gen, tgt)])
    torch.testing.assert_close(whole, single, rtol=0, atol=1e-12)


def test_identical_images_score_one_and_bad_input_is_rejected():
    images = as_batch(natural_images(2, 32, 32, seed=9))
    torch.testing.assert_close(ssim(images, images), torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="equal shapes"):
        ssim(images, images[:, :, :16])
    with pytest.raises(ValueError, match="exceeds"):
        ssim(images, images, GFLA_SSIM)


def test_parallel_ssim_leaves_the_callers_thread_setting():
    """The worker pool runs its products single-threaded, but torch's thread count can be
    process-wide (it is in a process whose main thread has not run a parallel op yet, as here):
    the caller's setting must be back after the call."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import numpy as np, torch\n"
        "from xinggan.metrics.ssim import PATN_SSIM, ssim\n"
        "torch.set_num_threads(2)\n"
        "x = torch.from_numpy(np.random.default_rng(0).random((6, 3, 32, 16)))\n"
        "ssim(x, x.flip(-1), PATN_SSIM, chunk=2, workers=2)\n"
        "print(torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2"]
