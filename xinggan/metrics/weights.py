"""Which weights file each metric network loads: an explicit path, the torch hub cache
(``$TORCH_HOME/hub/checkpoints``), or a download; :class:`WeightsUnavailable` says where a missing one goes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

from ..metric_registry import Protocol, get_protocol

__all__ = ["WeightsUnavailable", "MetricWeights", "locate_weights"]


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are neither at the given path, in the hub cache, nor downloadable."""


@dataclass
class MetricWeights:
    """Weights files of the TF-ported Inception (IS, PATN FID), torchvision's Inception-v3 (GFLA FID), AlexNet
    (LPIPS) and OpenPose (PCKh); ``None``: the hub cache, then a download (no OpenPose: detections CSV)."""

    inception: Optional[str] = None
    torchvision_inception: Optional[str] = None
    alexnet: Optional[str] = None
    allow_download: bool = True
    pose: Optional[str] = None

    @classmethod
    def for_protocol(cls, protocol: Union[str, Protocol], inception: Optional[str] = None,
                     lpips: Optional[str] = None, pose: Optional[str] = None,
                     allow_download: bool = True) -> "MetricWeights":
        """The files a user names, each given to the network ``protocol`` scores with: ``inception`` to its
        FID network (torchvision's for ``gfla``, else the TF port that also gives IS); ``""`` is not given."""
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


def locate_weights(what: str, filename: str, url: str, explicit: Optional[str], allow_download: bool,
                   option: str) -> Path:
    """A local file holding ``filename``: ``explicit``, else the hub cache, else a download; the error
    names the network (``what``) and the flag that takes a path (``option``)."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"{what}: weights file {path} does not exist (expected {filename})")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
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
