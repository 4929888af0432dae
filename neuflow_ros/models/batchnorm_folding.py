"""Fold inference-time BatchNorms into the convolutions that feed them.

A BN in eval mode is a per-channel affine map; when it directly follows a
convolution, scaling that conv's weights and adding a bias gives the same
result with one pass over memory fewer. Not every NeuFlow BN qualifies:

- NeuFlow v1's blocks normalize the *sum* of two LeakyReLU outputs, so a
  nonlinearity sits between each conv and the BN: nothing to fold there, and
  the v1 copy behaves exactly like the original.
- NeuFlow v2's `cross_attn_s16.norm` follows attention, not a convolution.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy with every conv->BN pair merged into one biased conv.

    The copy's state dict no longer matches the official checkpoints, so fold
    after loading weights. The original model is left untouched.
    """
    folded = copy.deepcopy(model).eval()
    for module in list(folded.modules()):
        for conv_name, norm_name in _conv_bn_pairs(module):
            conv = getattr(module, conv_name)
            norm = getattr(module, norm_name)
            setattr(module, conv_name, fold_conv_bn(conv, norm))
            setattr(module, norm_name, nn.Identity())
    return folded


def _conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """Attribute-name pairs (conv, bn) in `module` where the BN consumes the conv output directly.

    Blocks declare their pairs in `conv_bn_pairs`; in an nn.Sequential any
    Conv2d immediately followed by a BatchNorm2d counts.
    """
    if hasattr(module, "conv_bn_pairs"):
        return list(module.conv_bn_pairs)
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        return [
            (first, second)
            for first, second in itertools.pairwise(names)
            if isinstance(module._modules[first], nn.Conv2d)
            and isinstance(module._modules[second], nn.BatchNorm2d)
        ]
    return []


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d computing norm(conv(x)) with the BN's running statistics."""
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    dtype = conv.weight.dtype
    scale = torch.rsqrt(norm.running_var.double() + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.double()
    shift = -norm.running_mean.double() * scale
    if norm.bias is not None:
        shift = shift + norm.bias.double()
    if conv.bias is not None:
        shift = shift + conv.bias.double() * scale
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=dtype,
    )
    fused.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(dtype))
    fused.bias.copy_(shift.to(dtype))
    return fused
