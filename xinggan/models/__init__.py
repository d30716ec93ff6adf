"""XingGAN networks built from the config: the generator and the two discriminators.

``build_generator(cfg)`` and ``build_discriminators(cfg)`` are the only constructors the entry
points need; they apply the released initialisation.  The modules are pure (no device
handling): callers move them with ``.to(device)``.
"""
from __future__ import annotations

from torch import nn

from xinggan.models.attention import CrossAttention
from xinggan.models.discriminator import ResnetDiscriminator
from xinggan.models.fusion import CandidateDecoder, CoAttentionFusion
from xinggan.models.generator import NUM_KEYPOINTS, XingGenerator, build_fusion
from xinggan.models.layers import init_generator_weights
from xinggan.models.multiscale_attention import MultiScaleCrossAttention
from xinggan.models.xing_block import XingBlock, build_cross_attention
from xinggan.ops.attention import ATTENTION_IMPLS

__all__ = [
    "XingGenerator", "XingBlock", "CrossAttention", "CoAttentionFusion", "CandidateDecoder",
    "ResnetDiscriminator", "build_generator", "build_discriminators", "build_cross_attention",
    "build_fusion", "init_generator_weights", "set_attention_impl", "count_parameters",
]


def build_generator(cfg) -> XingGenerator:
    """The generator of ``cfg.model``, initialised as released (N(0, init_gain)).

    ``model.name`` is a label: the ``model.generator`` switches define the network, and the
    XingGAN++ parts come from the factories ``build_cross_attention`` and ``build_fusion``.
    """
    generator = XingGenerator(cfg)
    init_generator_weights(generator, cfg.model.init_gain)
    return generator


def build_discriminators(cfg) -> tuple[ResnetDiscriminator, ResnetDiscriminator]:
    """(shape discriminator on image ++ target pose, appearance discriminator on image ++ source
    image), with PyTorch's default initialisation as released."""
    d = cfg.model.discriminator

    def make(in_channels: int) -> ResnetDiscriminator:
        return ResnetDiscriminator(in_channels, d.ndf, d.n_blocks, cfg.model.norm, d.dropout,
                                   d.sigmoid, d.head)

    return make(3 + NUM_KEYPOINTS), make(3 + 3)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in module.parameters())


def set_attention_impl(model: nn.Module, impl: str, chunk: int | None = None) -> nn.Module:
    """Switch every attention module (:class:`CrossAttention`, :class:`MultiScaleCrossAttention`) in ``model`` to ``impl`` (and ``chunk``), in place.

    The weights do not depend on the implementation, so e.g. a model trained with ``sdpa`` on a
    GPU can be evaluated with ``chunked`` on a CPU.
    """
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
    for m in model.modules():
        if not isinstance(m, (CrossAttention, MultiScaleCrossAttention)):
            continue
        m.impl = impl
        if chunk is not None:
            m.chunk = chunk
    return model
