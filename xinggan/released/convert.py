"""Map the authors' released XingGAN checkpoints (github.com/Ha0Tang/XingGAN @ 10d6146, plain state
dicts) onto our modules and back, each key by an explicit rule (docs/networks.md); nothing is matched by
position. Transposed convolutions keep PyTorch's [in, out, k, k] layout on both sides."""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from xinggan.checkpoint import CheckpointError
from xinggan.models import build_discriminators, build_generator

KINDS = ("generator", "shape_discriminator", "appearance_discriminator")
RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


class ConversionError(CheckpointError):
    """A released checkpoint does not map onto the network described by the config."""


# Released module path -> our module path. Sequential indices of the released encoders / discriminator stems:
# 0 pad, 1 conv, 2 norm, 3 relu, 4 conv, 5 norm, 6 relu, 7 conv, 8 norm, 9 relu.
_STEM = {"1": "conv_in", "2": "norm_in", "4": "conv_down1", "5": "norm_down1",
         "7": "conv_down2", "8": "norm_down2"}
# Xing block / residual block conv paths: 0 pad, 1 conv, 2 norm, 3 relu, 4 dropout, 5 pad,
# 6 conv, 7 norm (the shape path has no 7).
_CONV_PATH = {"1": "conv1", "2": "norm1", "6": "conv2", "7": "norm2"}
# Decoders: 0 convT, 1 norm, 2 relu, 3 convT, 4 norm, 5 relu, 6 pad, 7 conv, 8 tanh.
_DECODER = {"0": "up1", "1": "norm1", "3": "up2", "4": "norm2", "7": "conv_out"}
_ATTENTION = {"query_conv": "query", "key_conv": "key", "value_conv": "value"}
_FUSION = {"x2_con": "shape_decoder.project", "x2_norm": "shape_decoder.project_norm",
           "atte_con": "fusion.up1", "atte_norm": "fusion.norm1", "atte_con1": "fusion.up2",
           "atte_norm1": "fusion.norm2", "atte_con2": "fusion.to_maps"}

Rule = tuple[re.Pattern, Callable[[re.Match], str]]


def _rules(*pairs: tuple[str, Callable[[re.Match], str]]) -> list[Rule]:
    return [(re.compile(pattern), fn) for pattern, fn in pairs]


_GENERATOR_RULES = _rules(
    (r"stream1_down\.(\d+)", lambda m: f"appearance_encoder.{_STEM[m[1]]}"),
    (r"stream2_down\.(\d+)", lambda m: f"shape_encoder.{_STEM[m[1]]}"),
    (r"att\.(\d+)", lambda m: f"blocks.{m[1]}"),  # holds the shared ``gamma``
    (r"att\.(\d+)\.conv_block_stream1\.(\d+)",
     lambda m: f"blocks.{m[1]}.appearance_conv.{_CONV_PATH[m[2]]}"),
    (r"att\.(\d+)\.conv_block_stream2\.(\d+)",
     lambda m: f"blocks.{m[1]}.shape_conv.{_CONV_PATH[m[2]]}"),
    (r"att\.(\d+)\.(query_conv|key_conv|value_conv)",
     lambda m: f"blocks.{m[1]}.attention.{_ATTENTION[m[2]]}"),
    (r"stream1_up\.(\d+)", lambda m: f"appearance_decoder.{_DECODER[m[1]]}"),
    (r"stream2_up\.(\d+)", lambda m: f"shape_decoder.{_DECODER[m[1]]}"),
    (r"(x2_con|x2_norm|atte_con|atte_norm|atte_con1|atte_norm1|atte_con2)",
     lambda m: _FUSION[m[1]]),
)

# The released discriminator: stem indices as above, residual blocks at 10, 11, 12 (n_blocks
# of them), then the sigmoid.
_DISCRIMINATOR_RULES = _rules(
    (r"(\d+)", lambda m: _STEM[m[1]]),
    (r"(\d+)\.conv_block\.(\d+)",
     lambda m: f"block{_residual_index(m[1])}.conv_block.{_CONV_PATH[m[2]]}"),
)


def _residual_index(released: str) -> int:
    i = int(released) - 9  # model.10 is our block1
    if i < 1:
        raise KeyError(released)
    return i


def map_released_key(kind: str, key: str) -> Optional[str]:
    """Our state-dict key for a released key (``module.`` and ``model.`` wrappers removed), or None."""
    module_path, _, param = re.sub(r"^((module|model)\.)+", "", key).rpartition(".")
    for pattern, fn in _GENERATOR_RULES if kind == "generator" else _DISCRIMINATOR_RULES:
        if m := pattern.fullmatch(module_path):
            try:
                return f"{fn(m)}.{param}"
            except KeyError:  # an index that no rule covers
                return None
    return None


def _invert(table: Mapping[str, str]) -> dict[str, str]:
    return {v: k for k, v in table.items()}


_INV_STEM, _INV_CONV_PATH, _INV_DECODER = _invert(_STEM), _invert(_CONV_PATH), _invert(_DECODER)
_INV_ATTENTION, _INV_FUSION = _invert(_ATTENTION), _invert(_FUSION)
_STREAMS = {"appearance_encoder": ("stream1_down", _INV_STEM),
            "shape_encoder": ("stream2_down", _INV_STEM),
            "appearance_decoder": ("stream1_up", _INV_DECODER),
            "shape_decoder": ("stream2_up", _INV_DECODER)}


def _released_module(kind: str, module_path: str) -> Optional[str]:
    """The released module path of one of ours (the inverse of the rules above)."""
    if kind != "generator":
        m = re.fullmatch(r"block(\d+)\.conv_block\.(\w+)", module_path)
        if m:
            return f"{int(m[1]) + 9}.conv_block.{_INV_CONV_PATH[m[2]]}"
        return _INV_STEM.get(module_path)
    if module_path in _INV_FUSION:
        return _INV_FUSION[module_path]
    head, _, rest = module_path.partition(".")
    if head in _STREAMS and rest in _STREAMS[head][1]:
        return f"{_STREAMS[head][0]}.{_STREAMS[head][1][rest]}"
    m = re.fullmatch(r"blocks\.(\d+)(?:\.(appearance_conv|shape_conv|attention)\.(\w+))?",
                     module_path)
    if m is None:
        return None
    if m[2] is None:
        return f"att.{m[1]}"
    if m[2] == "attention":
        return f"att.{m[1]}.{_INV_ATTENTION[m[3]]}" if m[3] in _INV_ATTENTION else None
    stream = "conv_block_stream1" if m[2] == "appearance_conv" else "conv_block_stream2"
    return f"att.{m[1]}.{stream}.{_INV_CONV_PATH[m[3]]}" if m[3] in _INV_CONV_PATH else None


def to_released_state_dict(kind: str, state_dict: Mapping[str, Tensor]
                           ) -> "OrderedDict[str, Tensor]":
    """Our state dict of a released-architecture network under the released key names (each key
    checked to map back); :class:`ConversionError` for keys the released network lacks."""
    out: "OrderedDict[str, Tensor]" = OrderedDict()
    unknown = []
    for key, value in state_dict.items():
        module_path, _, param = key.rpartition(".")
        released = _released_module(kind, module_path)
        name = f"model.{released}.{param}" if released else None
        if name is None or map_released_key(kind, name) != key:
            unknown.append(key)
            continue
        out[name] = value
    if unknown:
        raise ConversionError(f"{kind}: keys with no place in the released network "
                              f"({len(unknown)}): {', '.join(unknown[:8])}")
    return out


def target_network(kind: str, cfg) -> nn.Module:
    """The network of ``kind`` that ``cfg`` builds, on the meta device (shapes only, no init cost)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    with torch.device("meta"):
        return build_generator(cfg) if kind == "generator" else build_discriminators(cfg)[KINDS.index(kind) - 1]


def _describe(items: Mapping[str, tuple], limit: int = 40) -> str:
    lines = [f"    {k} {list(shape)}" for k, shape in list(items.items())[:limit]]
    if len(items) > limit:
        lines.append(f"    ... and {len(items) - limit} more")
    return "\n".join(lines)


def convert_released_state_dict(kind: str, released_sd: Mapping[str, Tensor], cfg,
                                notes: Optional[list[str]] = None) -> "OrderedDict[str, Tensor]":
    """One released state dict as ours: ``kind`` is ``generator``, ``shape_discriminator`` (netD_PB) or
    ``appearance_discriminator`` (netD_PP), ``cfg`` a released config. Dropped or filled keys are described
    in ``notes``; :class:`ConversionError` lists unmatched source keys, unfilled keys and shape mismatches."""
    net = target_network(kind, cfg)
    target, modules = {k: tuple(v.shape) for k, v in net.state_dict().items()}, dict(net.named_modules())

    def norm_of(key: str, cls: type) -> bool:
        return isinstance(modules.get(key.rpartition(".")[0]), cls)

    converted, origin, unmatched, mismatched, dropped, norm_hint = {}, {}, {}, {}, 0, ""
    for key, value in released_sd.items():
        if not isinstance(value, Tensor):
            raise ConversionError(f"{kind}: released entry {key!r} is a {type(value).__name__}, not a tensor")
        ours = map_released_key(kind, key)
        if ours is None or ours not in target:
            if ours is not None and norm_of(ours, nn.InstanceNorm2d):
                if ours.rpartition(".")[2] in RUNNING_STATS:
                    dropped += 1  # InstanceNorm statistics of PyTorch < 0.4
                    continue
                norm_hint = "batch"  # affine norm weights where we have InstanceNorm
            unmatched[key] = tuple(value.shape)
        elif ours in converted:
            raise ConversionError(f"{kind}: released keys {origin[ours]!r} and {key!r} both map "
                                  f"to {ours!r} (the file holds the network twice?)")
        elif tuple(value.shape) != target[ours]:
            mismatched[ours] = f"    {key} {list(value.shape)} -> {ours} expects {list(target[ours])}"
        else:
            converted[ours], origin[ours] = value.detach().clone(), key
    missing = {k: s for k, s in target.items() if k not in converted and k not in mismatched}
    if any(norm_of(k, nn.BatchNorm2d) and not k.endswith("num_batches_tracked") for k in missing):
        norm_hint = "instance"  # no BatchNorm tensors where we have BatchNorm
    filled = [k for k in missing if k.endswith(".num_batches_tracked") and norm_of(k, nn.BatchNorm2d)]
    for k in filled:  # PyTorch < 0.4.1 did not save it
        converted[k] = torch.tensor(0, dtype=torch.long)
        del missing[k]
    if unmatched or missing or mismatched:
        raise ConversionError("\n".join([
            f"{kind}: the released checkpoint does not match the network of this config",
            *(["shape mismatches:\n" + "\n".join(mismatched.values())] if mismatched else []),
            *([f"released keys with no place in our network ({len(unmatched)}):\n" + _describe(unmatched)]
              if unmatched else []),
            *([f"our keys the checkpoint does not fill ({len(missing)}):\n" + _describe(missing)] if missing else []),
            _hint(kind, norm_hint, mismatched)]))
    if notes is not None:
        notes += [text for n, text in (
            (dropped, f"{kind}: dropped {dropped} InstanceNorm running-statistics entries (saved by PyTorch < 0.4, "
                      "unused)"),
            (filled, f"{kind}: filled {len(filled)} missing BatchNorm num_batches_tracked entries with 0")) if n]
    return OrderedDict((k, converted[k]) for k in target)


def _hint(kind: str, norm_hint: str, mismatched: Mapping[str, str]) -> str:
    hints = []
    if norm_hint:
        hints.append(f"the checkpoint looks trained with model.norm: {norm_hint} "
                     "(Market-1501: batch, DeepFashion: instance)")
    if kind != "generator" and "conv_in.weight" in mismatched:
        hints.append("the shape discriminator is netD_PB (21 input channels), the appearance "
                     "discriminator netD_PP (6 input channels): were the files swapped?")
    hints.append("the config must describe the released network (configs/market.yaml or "
                 "configs/deepfashion.yaml: ngf 64, n_blocks 9, num_candidates 10, "
                 "share_projections, appearance_update, shape_update and fusion true)")
    return "hint: " + "; ".join(hints)


def load_released_state_dict(path: Union[str, Path]) -> "OrderedDict[str, Tensor]":
    """Read a released ``.pth`` file safely (``weights_only=True``) as a dict of tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"released checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means an unreadable file
        raise CheckpointError(f"{path}: cannot read as a PyTorch state dict ({exc})") from None
    if isinstance(state, dict) and state.get("format") == "xinggan":
        raise CheckpointError(f"{path}: already an xinggan checkpoint; no conversion needed")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a plain state dict of tensors (as the authors "
                              "released), got something else")
    return OrderedDict(state)
