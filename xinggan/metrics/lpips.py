"""LPIPS (Zhang et al. 2018), AlexNet backbone v0.1 through the ``lpips`` package, as the GFLA-era
evaluation; the backbone is torchvision's ImageNet AlexNet, located by :mod:`xinggan.metrics.weights`."""
from __future__ import annotations

import warnings
from typing import Optional

import torch

from .weights import locate_weights

__all__ = ["ALEXNET_FILE", "LPIPSAlex"]

ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


def _load_backbone(model, state_dict: dict) -> None:
    """Copy torchvision AlexNet ``features.*`` weights into the lpips slices (same indices)."""
    copied = 0
    for slice_module in model.net.children():
        for index, layer in slice_module.named_children():
            for name, tensor in layer.named_parameters(recurse=False):
                key = f"features.{index}.{name}"
                if key not in state_dict:
                    raise KeyError(f"AlexNet weights lack {key!r}")
                with torch.no_grad():
                    tensor.copy_(state_dict[key])
                copied += 1
    if copied == 0:
        raise RuntimeError("no AlexNet layers found in the lpips model")


class LPIPSAlex(torch.nn.Module):
    """``forward(generated, target)`` on [-1, 1] float ``(B, 3, H, W)`` -> float64 ``(B,)`` distances."""

    def __init__(self, backbone_path: Optional[str] = None, pretrained_backbone: bool = True,
                 allow_download: bool = True):
        super().__init__()
        import lpips  # loads torchvision (seconds): only when the network is built

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's deprecation notes about 'pretrained'
            self.model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
        if pretrained_backbone:
            path = locate_weights("AlexNet (LPIPS backbone)", ALEXNET_FILE, ALEXNET_URL, backbone_path,
                                  allow_download, "--lpips-weights")
            _load_backbone(self.model, torch.load(path, map_location="cpu"))
        self.model.eval().requires_grad_(False)

    @torch.no_grad()
    def forward(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distance = self.model(generated.to(torch.float32), target.to(torch.float32))
        return distance.flatten().to(torch.float64).cpu()
