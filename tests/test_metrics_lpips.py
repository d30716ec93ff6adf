"""LPIPS AlexNet v0.1 wrapper: untrained backbone, backbone loading, missing weights."""
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


def test_linear_layers_come_from_the_package(untrained):
    import warnings

    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shipped = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    torch.testing.assert_close(untrained.model.lin0.model[1].weight, shipped.lin0.model[1].weight)
    assert untrained.model.lin0.model[1].weight.abs().sum() > 0


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
