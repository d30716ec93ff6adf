"""LPIPS AlexNet v0.1: the formula written out against our model, backbone loading, missing weights."""
from __future__ import annotations

import pytest
import torch

from xinggan.metrics.lpips import ALEXNET_FILE, LPIPSAlex
from xinggan.metrics.weights import WeightsUnavailable


@pytest.fixture(scope="module")
def untrained():
    torch.manual_seed(0)
    return LPIPSAlex(pretrained_backbone=False)


def test_distances_per_pair(untrained):
    torch.manual_seed(1)
    a = torch.rand(3, 3, 64, 32) * 2 - 1
    b = torch.rand(3, 3, 64, 32) * 2 - 1
    d = untrained(a, b)
    assert d.shape == (3,) and d.dtype == torch.float64 and (d > 0).all()
    torch.testing.assert_close(untrained(a, a), torch.zeros(3, dtype=torch.float64), atol=1e-7, rtol=0)
    # One pair at a time gives the same numbers (no batch coupling).
    torch.testing.assert_close(torch.cat([untrained(a[i:i + 1], b[i:i + 1]) for i in range(3)]), d)


def lpips_from_scratch(alexnet, lin_weights: dict, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 (Zhang et al., CVPR 2018) written out: scale the [-1, 1] inputs, take the five
    AlexNet ReLU outputs, unit-normalise each feature vector over channels, square the difference,
    weight the channels with the learned linear layer, average over space, sum over layers."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    relu_outputs = (1, 4, 7, 9, 11)  # indices of conv1..conv5's ReLUs in torchvision's AlexNet.features

    def features(x):
        out, x = [], (x - shift) / scale
        for index, layer in enumerate(alexnet.features[:12]):
            x = layer(x)
            if index in relu_outputs:
                out.append(x.double())
        return out

    total = torch.zeros(a.shape[0], dtype=torch.float64)
    for k, (fa, fb) in enumerate(zip(features(a), features(b))):
        na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        weight = lin_weights[f"lin{k}.model.1.weight"].double().view(1, -1, 1, 1)
        total += ((na - nb) ** 2 * weight).sum(1).mean((1, 2))
    return total


@torch.no_grad()
def test_equals_the_lpips_formula_with_the_given_backbone(tmp_path):
    """Our model, given an AlexNet file, computes the LPIPS formula on that AlexNet's features with
    the v0.1 linear weights shipped in the lpips package (read from the package's file directly)."""
    from pathlib import Path

    import lpips
    from torchvision.models import alexnet

    torch.manual_seed(3)
    reference = alexnet(weights=None).eval()
    path = tmp_path / ALEXNET_FILE
    torch.save(reference.state_dict(), path)
    model = LPIPSAlex(backbone_path=str(path))
    lin_file = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    lin_weights = torch.load(lin_file, map_location="cpu", weights_only=True)
    assert lin_weights["lin0.model.1.weight"].abs().sum() > 0  # trained weights, not a fresh layer

    torch.manual_seed(4)
    a = torch.rand(3, 3, 64, 48) * 2 - 1
    b = (a + 0.3 * torch.randn(3, 3, 64, 48)).clamp(-1, 1)
    expected = lpips_from_scratch(reference, lin_weights, a, b)
    assert expected.min() > 0 and expected.max() - expected.min() > 1e-4  # the pairs really differ
    torch.testing.assert_close(model(a, b), expected, rtol=1e-4, atol=1e-7)


def test_backbone_loaded_from_a_local_file(tmp_path):
    from torchvision.models import alexnet

    torch.manual_seed(2)
    reference = alexnet(weights=None)
    path = tmp_path / ALEXNET_FILE
    torch.save(reference.state_dict(), path)
    model = LPIPSAlex(backbone_path=str(path))
    torch.testing.assert_close(getattr(model.model.net.slice1, "0").weight, reference.features[0].weight)
    torch.testing.assert_close(getattr(model.model.net.slice5, "10").weight, reference.features[10].weight)


def test_missing_backbone_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable) as error:
        LPIPSAlex(allow_download=False)
    assert ALEXNET_FILE in str(error.value) and "--lpips-weights" in str(error.value)
