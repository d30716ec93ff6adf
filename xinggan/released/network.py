"""The released XingGAN forward passes, literally, in functional ops on the released key names, with
the N x N attention maps materialised: sharing no code with :mod:`xinggan.models`, the numerical and
speed reference for it. ``training=True``: BatchNorm on batch statistics (running statistics updated in
place, as released) and dropout in the Xing blocks' conv paths."""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

def _ops(sd: Mapping[str, Tensor], norm: str, training: bool):
    def conv(x, name, stride=1, padding=0):
        return F.conv2d(x, sd[name + ".weight"], sd.get(name + ".bias"), stride, padding)

    def conv_t(x, name, stride, padding, output_padding):
        return F.conv_transpose2d(x, sd[name + ".weight"], sd.get(name + ".bias"), stride,
                                  padding, output_padding)

    def normalise(x, name):
        if norm == "batch":
            return F.batch_norm(x, sd[name + ".running_mean"], sd[name + ".running_var"],
                                sd[name + ".weight"], sd[name + ".bias"], training=training,
                                momentum=0.1, eps=1e-5)
        return F.instance_norm(x, eps=1e-5)

    def pad(x, p):
        return F.pad(x, (p, p, p, p), mode="reflect")

    return conv, conv_t, normalise, pad


def released_generator_forward(sd: Mapping[str, Tensor], source_image: Tensor,
                               source_pose: Tensor, target_pose: Tensor, norm: str,
                               n_blocks: int = 9, n_images: int = 10, training: bool = False,
                               dropout: float = 0.5) -> Tensor:
    """The released generator (``XingNetwork`` with its ``XingModel``), on released keys."""
    conv, conv_t, normalise, pad = _ops(sd, norm, training)

    def down(x, stream):
        x = F.relu(normalise(conv(pad(x, 3), f"{stream}.1"), f"{stream}.2"))
        x = F.relu(normalise(conv(x, f"{stream}.4", 2, 1), f"{stream}.5"))
        return F.relu(normalise(conv(x, f"{stream}.7", 2, 1), f"{stream}.8"))

    x1 = down(source_image, "model.stream1_down")
    x2 = down(torch.cat((source_pose, target_pose), 1), "model.stream2_down")
    for t in range(n_blocks):
        blk = f"model.att.{t}"
        c1, c2 = f"{blk}.conv_block_stream1", f"{blk}.conv_block_stream2"
        a = F.relu(normalise(conv(pad(x1, 1), c1 + ".1"), c1 + ".2"))
        a = F.dropout(a, dropout, training)
        a = normalise(conv(pad(a, 1), c1 + ".6"), c1 + ".7")
        s = F.relu(normalise(conv(pad(x2, 1), c2 + ".1"), c2 + ".2"))
        s = F.dropout(s, dropout, training)
        s = conv(pad(s, 1), c2 + ".6")
        b, c, h, w = a.shape

        def attention(query_from, key_from):
            # SAGAN-style: (B, N, C') x (B, C', N) energies, softmax over the keys, and the
            # values weighted by the transposed map, all N x N maps materialised.
            proj_query = conv(query_from, blk + ".query_conv").view(b, -1, h * w).permute(0, 2, 1)
            proj_key = conv(key_from, blk + ".key_conv").view(b, -1, h * w)
            energy = torch.bmm(proj_query, proj_key)
            att = F.softmax(energy, dim=-1)
            proj_value = conv(query_from, blk + ".value_conv").view(b, -1, h * w)
            return torch.bmm(proj_value, att.permute(0, 2, 1)).view(b, c, h, w)

        gamma = sd[blk + ".gamma"]
        a_out = gamma * attention(a, s) + a
        s_out = gamma * attention(s, a) + s
        x1 = a_out
        x2 = torch.cat((a_out, s_out), 1)

    def up(x, stream):
        x = F.relu(normalise(conv_t(x, f"{stream}.0", 2, 1, 1), f"{stream}.1"))
        x = F.relu(normalise(conv_t(x, f"{stream}.3", 2, 1, 1), f"{stream}.4"))
        return torch.tanh(conv(pad(x, 3), f"{stream}.7"))

    images1 = up(x1, "model.stream1_up")
    x2_reduced = F.relu(normalise(conv_t(x2, "model.x2_con", 1, 0, 0), "model.x2_norm"))
    images2 = up(x2_reduced, "model.stream2_up")
    att = F.relu(normalise(conv_t(torch.cat((x1, x2), 1), "model.atte_con", 2, 1, 1),
                           "model.atte_norm"))
    att = F.relu(normalise(conv_t(att, "model.atte_con1", 2, 1, 1), "model.atte_norm1"))
    att = F.softmax(conv_t(att, "model.atte_con2", 1, 0, 0), dim=1)
    out = 0
    for k in range(n_images):
        out = out + images1[:, 3 * k:3 * k + 3] * att[:, k:k + 1]
    for k in range(n_images):
        out = out + images2[:, 3 * k:3 * k + 3] * att[:, n_images + k:n_images + k + 1]
    return out + source_image * att[:, 2 * n_images:2 * n_images + 1]


def released_discriminator_forward(sd: Mapping[str, Tensor], x: Tensor, norm: str,
                                   sigmoid: bool, n_blocks: int = 3, training: bool = False,
                                   dropout: float = 0.5) -> Tensor:
    """The released ResNet patch discriminator (``netD_PB`` / ``netD_PP``), on released keys."""
    conv, _, normalise, pad = _ops(sd, norm, training)
    x = F.relu(normalise(conv(pad(x, 3), "model.1"), "model.2"))
    x = F.relu(normalise(conv(x, "model.4", 2, 1), "model.5"))
    x = F.relu(normalise(conv(x, "model.7", 2, 1), "model.8"))
    for i in range(10, 10 + n_blocks):
        blk = f"model.{i}.conv_block"
        y = F.relu(normalise(conv(pad(x, 1), blk + ".1"), blk + ".2"))
        y = F.dropout(y, dropout, training)
        y = normalise(conv(pad(y, 1), blk + ".6"), blk + ".7")
        x = x + y
    return torch.sigmoid(x) if sigmoid else x
