"""Locating the pretrained weights the metrics need (TF-ported Inception, torchvision Inception, AlexNet).

Each network's weights come from its library's standard download into the torch hub cache
(``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``). On a machine
without internet, put the file there or pass its path explicitly; when neither works,
:class:`WeightsUnavailable` says which file is missing and where it goes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

__all__ = ["WeightsUnavailable", "MetricWeights", "hub_checkpoint", "locate_weights"]


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are neither at the given path, in the hub cache, nor downloadable."""


@dataclass
class MetricWeights:
    """Where the metric networks' weights come from.

    ``inception``: TF-ported Inception of torch-fidelity (``weights-inception-2015-12-05-6726825d.pth``)
    for IS and TF-Inception FID; ``torchvision_inception``: torchvision's ImageNet Inception-v3
    (``inception_v3_google-0cc3c7bd.pth``) for the GFLA-era FID; ``alexnet``: torchvision's AlexNet
    (``alexnet-owt-7be5be79.pth``), the LPIPS backbone. ``None``: the hub cache, then a download
    when ``allow_download``.
    """

    inception: Optional[str] = None
    torchvision_inception: Optional[str] = None
    alexnet: Optional[str] = None
    allow_download: bool = True


def hub_checkpoint(filename: str) -> Path:
    """Path of ``filename`` in the torch hub checkpoint cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def locate_weights(what: str, filename: str, url: str, explicit: Optional[str], allow_download: bool,
                   option: str) -> Path:
    """Return a local file holding ``filename``: ``explicit``, else the hub cache, else a download.

    ``what`` names the network and ``option`` the command-line flag or argument that takes a path;
    both appear in the error.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"{what}: weights file {path} does not exist (expected {filename})")
        return path
    cached = hub_checkpoint(filename)
    if cached.is_file():
        return cached
    if allow_download:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), progress=False)
            return cached
        except Exception as error:  # no network, proxy, disk: all mean "not available here"
            reason = f"download from {url} failed ({type(error).__name__}: {error})"
    else:
        reason = "downloads are switched off"
    raise WeightsUnavailable(
        f"{what}: weights file {filename} not found and {reason}. Download {url} on a machine with "
        f"internet and put it at {cached} (the torch hub cache), or pass its path with {option}."
    )
