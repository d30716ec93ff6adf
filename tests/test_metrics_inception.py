"""IS and FID: arithmetic against independent numpy, extractors end to end on untrained networks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import softmax

from xinggan.metrics.fid import (RunningStatistics, TorchvisionInception, frechet_distance,
                                 real_statistics)
from xinggan.metrics.inception_score import TF_INCEPTION_FILE, TFInception, inception_score_from_logits
from xinggan.metrics.weights import WeightsUnavailable


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def reference_is(logits: np.ndarray, splits: int) -> tuple[float, float]:
    p = softmax(logits.astype(np.float64), axis=1)
    scores = []
    for part in np.array_split(p, splits):  # contiguous; sizes equal here
        marginal = part.mean(axis=0)
        # E_x KL(p(y|x) || p(y)) = E_x sum p log p - sum_y p(y) log p(y)
        kl = np.mean(np.sum(part * np.log(part), axis=1)) - np.sum(marginal * np.log(marginal))
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def test_inception_score_arithmetic():
    logits = np.random.default_rng(0).normal(scale=3.0, size=(50, 1008))
    np.testing.assert_allclose(inception_score_from_logits(logits, 10), reference_is(logits, 10), rtol=1e-10)


def test_inception_score_limits():
    assert inception_score_from_logits(np.zeros((20, 7)))[0] == pytest.approx(1.0)
    # Each split holds 4 images of 4 different classes, predicted with certainty: IS = 4.
    confident = np.full((40, 10), -50.0)
    confident[np.arange(40), np.arange(40) % 4] = 50.0
    mean, std = inception_score_from_logits(confident)
    assert mean == pytest.approx(4.0, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        inception_score_from_logits(np.zeros((5, 3)))


def reference_fid(x: np.ndarray, y: np.ndarray) -> float:
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    # Tr sqrt(S1 S2) = sum of sqrt of the eigenvalues of S1 S2 (real, >= 0 for covariances).
    eig = np.linalg.eigvals(s1 @ s2).real.clip(min=0)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig).sum())


def test_frechet_distance_arithmetic():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 16))
    y = rng.normal(size=(300, 16)) @ rng.normal(scale=0.5, size=(16, 16)) + 0.3
    mu1, s1 = x.mean(0), np.cov(x, rowvar=False)
    mu2, s2 = y.mean(0), np.cov(y, rowvar=False)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference_fid(x, y), rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-6)


def test_running_statistics_match_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(loc=50.0, size=(103, 8))
    running = RunningStatistics()
    for start in range(0, 103, 10):
        running.add(torch.from_numpy(x[start:start + 10]))
    mu, sigma = running.statistics()
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)


def test_tf_inception_untrained_end_to_end():
    torch.manual_seed(0)
    model = TFInception(("logits_unbiased", "2048"), random_init=True)
    assert model.network.INPUT_IMAGE_SIZE == 299
    model.network.INPUT_IMAGE_SIZE = 96  # smaller resize: same plumbing, a tenth of the compute
    images = torch.randint(0, 256, (2, 3, 64, 32), dtype=torch.uint8)
    out = model(images)
    assert out["logits_unbiased"].shape == (2, 1008) and out["2048"].shape == (2, 2048)
    assert torch.isfinite(out["logits_unbiased"]).all()
    # The unbiased logits are the pool features times the fc weight, without the bias.
    expected = out["2048"] @ model.network.fc.weight.double().T
    torch.testing.assert_close(out["logits_unbiased"], expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="uint8"):
        model(images.float())


def test_tf_inception_without_weights_names_the_file(empty_torch_home):
    with pytest.raises(WeightsUnavailable) as error:
        TFInception(allow_download=False)
    message = str(error.value)
    assert TF_INCEPTION_FILE in message and str(empty_torch_home) in message and "--inception-weights" in message
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        TFInception(weights_path=str(empty_torch_home / "nowhere.pth"))


def test_torchvision_inception_matches_torchvision_forward():
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    ours = TorchvisionInception(random_init=True)
    assert ours.input_size == 299
    ours.input_size = 96  # smaller resize: same plumbing, a tenth of the compute
    # Same weights through torchvision's own forward with transform_input on [0, 1] inputs.
    reference = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    reference.load_state_dict(ours.network.state_dict())
    reference.fc = torch.nn.Identity()
    reference.eval()
    images = torch.randint(0, 256, (2, 3, 64, 32), dtype=torch.uint8)
    with torch.no_grad():
        unit = F.interpolate(images.float() / 255, size=(96, 96), mode="bilinear", align_corners=False)
        expected = reference(unit)
    torch.testing.assert_close(ours(images), expected.double(), rtol=1e-4, atol=1e-5)


def test_real_statistics_are_cached(tmp_path):
    calls = []
    rng = np.random.default_rng(3)
    table = {f"img{i}.png": rng.normal(size=4) for i in range(12)}

    def extract(paths):
        calls.append(len(paths))
        return torch.from_numpy(np.stack([table[p.name] for p in paths]))

    paths = [tmp_path / name for name in sorted(table)]
    mu, sigma = real_statistics(paths, "gfla", "torchvision", (128, 64), extract, batch_size=5,
                                cache_dir=tmp_path / "cache", progress=False)
    features = np.stack([table[p.name] for p in paths])
    np.testing.assert_allclose(mu, features.mean(0))
    np.testing.assert_allclose(sigma, np.cov(features, rowvar=False), atol=1e-12)
    assert calls == [5, 5, 2] and len(list((tmp_path / "cache").glob("*.npz"))) == 1
    again = real_statistics(list(reversed(paths)), "gfla", "torchvision", (128, 64), extract, batch_size=5,
                            cache_dir=tmp_path / "cache", progress=False)
    assert calls == [5, 5, 2]  # same sorted file list: read from the cache
    np.testing.assert_array_equal(again[1], sigma)
    real_statistics(paths[:-1], "gfla", "torchvision", (128, 64), extract, batch_size=5,
                    cache_dir=tmp_path / "cache", progress=False)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # another file list, another entry
