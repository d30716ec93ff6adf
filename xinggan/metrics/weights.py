"""Which weights file each metric network loads, and where such a file is found.

The networks: the TF-ported Inception of torch-fidelity (IS; the FID of the PATN protocols),
torchvision's Inception-v3 (the GFLA-era FID), torchvision's AlexNet (the LPIPS backbone) and the
OpenPose body model (keypoints of the generated images for PCKh).
:meth:`MetricWeights.for_protocol` is the one rule that assigns the files a user gives (one
Inception file, one AlexNet file, one OpenPose file) to the networks a protocol scores with.

Each Inception / AlexNet file comes from its library's standard download into the torch hub cache
(``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``). On a machine
without internet, put the file there or pass its path explicitly; when neither works,
:class:`WeightsUnavailable` says which file is missing and where it goes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

from ..metric_registry import Protocol, get_protocol

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
    when ``allow_download``. ``pose``: OpenPose body weights (PATN's Keras ``pose_estimator.h5`` or
    the PyTorch conversion ``body_pose_model.pth``) with which PCKh detects the generated images'
    keypoints; ``None``: PCKh needs a CSV of detections instead.
    """

    inception: Optional[str] = None
    torchvision_inception: Optional[str] = None
    alexnet: Optional[str] = None
    allow_download: bool = True
    pose: Optional[str] = None

    @classmethod
    def for_protocol(cls, protocol: Union[str, Protocol], inception: Optional[str] = None,
                     lpips: Optional[str] = None, pose: Optional[str] = None,
                     allow_download: bool = True) -> "MetricWeights":
        """The files a user names, each given to the network ``protocol`` scores with.

        ``inception`` (``--inception-weights`` / ``eval.inception_weights``) is the weights file of
        the protocol's FID network: torchvision's Inception-v3 when its ``fid_network`` is
        ``'torchvision'`` (``gfla``), otherwise the TF-ported Inception, which also computes IS
        (the PATN protocols and ``toy``). ``lpips``: the AlexNet backbone; ``pose``: the OpenPose
        body weights for PCKh. An empty string (an unset config value) counts as not given.
        """
        spec = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
        inception = inception or None
        torchvision_fid = spec.fid_network == "torchvision"
        return cls(inception=None if torchvision_fid else inception,
                   torchvision_inception=inception if torchvision_fid else None,
                   alexnet=lpips or None, allow_download=allow_download, pose=pose or None)

    @classmethod
    def coerce(cls, weights: Union["MetricWeights", dict, None]) -> "MetricWeights":
        """``weights`` as given, a dict of the fields, or ``None`` (hub cache / download for every network)."""
        if isinstance(weights, dict):
            return cls(**weights)
        return weights or cls()


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
