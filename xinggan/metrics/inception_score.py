"""Inception Score with TensorFlow's 2015-12-05 Inception graph (torch-fidelity's port), as OpenAI's
``inception_score.py``: unbiased logits, 10 contiguous splits, mean and std."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .weights import locate_weights

__all__ = ["TF_INCEPTION_FILE", "TF_INCEPTION_URL", "inception_score_from_logits", "TFInception"]

TF_INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
TF_INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + TF_INCEPTION_FILE
IS_SPLITS = 10


def inception_score_from_logits(logits: np.ndarray, splits: int = IS_SPLITS) -> tuple[float, float]:
    """IS mean and std over ``splits`` contiguous splits of ``(N, K)`` unbiased logits (float64 math)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[0] < splits:
        raise ValueError(f"inception score needs (N, K) logits with N >= {splits} splits, got {logits.shape}")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))   # log softmax
    p = np.exp(log_p)
    n = logits.shape[0]
    scores = []
    for i in range(splits):
        part_p = p[i * n // splits:(i + 1) * n // splits]
        part_log_p = log_p[i * n // splits:(i + 1) * n // splits]
        log_marginal = np.log(part_p.mean(axis=0, keepdims=True))
        kl = (part_p * (part_log_p - log_marginal)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def _build_extractor(features: tuple, weights_path: Optional[str], random_init: bool):
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception  # loads torchvision: only when built

    if not random_init:
        return tf_inception.FeatureExtractorInceptionV3(
            "inception-v3-compat", list(features), feature_extractor_weights_path=weights_path)

    class _Untrained(tf_inception.FeatureExtractorInceptionV3):
        # torch-fidelity loads weights inside __init__; skip it to get the same network untrained.
        def load_state_dict(self, state_dict, *args, **kwargs):
            if state_dict is None:
                return None
            return super().load_state_dict(state_dict, *args, **kwargs)

    downloader = tf_inception.load_state_dict_from_url
    tf_inception.load_state_dict_from_url = lambda *args, **kwargs: None
    try:
        return _Untrained("inception-v3-compat", list(features))
    finally:
        tf_inception.load_state_dict_from_url = downloader


class TFInception(torch.nn.Module):
    """torch-fidelity's TF-ported Inception-v3: uint8 ``(B, 3, H, W)`` -> ``{feature: float64}`` for
    ``'logits_unbiased'`` (IS) and / or ``'2048'`` (FID); ``random_init``: untrained, no weights file."""

    def __init__(self, features: tuple = ("logits_unbiased",), weights_path: Optional[str] = None,
                 allow_download: bool = True, random_init: bool = False):
        super().__init__()
        self.features = tuple(features)
        path = None
        if not random_init:
            path = str(locate_weights("TF-ported Inception-v3 (IS / FID)", TF_INCEPTION_FILE, TF_INCEPTION_URL,
                                      weights_path, allow_download, "--inception-weights"))
        self.network = _build_extractor(self.features, path, random_init)
        self.network.eval().requires_grad_(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"TFInception expects uint8 (B, 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
        outputs = self.network(images)
        return {name: out.to(torch.float64).cpu() for name, out in zip(self.features, outputs)}
