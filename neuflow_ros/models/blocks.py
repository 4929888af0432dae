"""Convolution building blocks of the NeuFlow backbones and refinement heads.

Attribute names (conv1, norm1, conv, conv_block, ...) are fixed by the official
checkpoints' state-dict keys, so they must not be renamed.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional

LEAKY_SLOPE = 0.1


def leaky_relu(x: Tensor) -> Tensor:
    return functional.leaky_relu(x, LEAKY_SLOPE)


class ConvNormBlock(nn.Module):
    """NeuFlow v2 unit: two conv -> BN -> LeakyReLU stages.

    The first convolution sets kernel, stride and padding (it does the
    downsampling); the second is a 3x3 refinement at the output size.
    `conv_bn_pairs` tells `fold_batchnorm` which BNs sit directly after a conv.
    """

    conv_bn_pairs = (("conv1", "norm1"), ("conv2", "norm2"))

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(out_channels)
        self.norm2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = leaky_relu(self.norm1(self.conv1(x)))
        return leaky_relu(self.norm2(self.conv2(x)))


class ResidualNormBlock(nn.Module):
    """NeuFlow v1 unit: conv -> LReLU, a 3x3 conv -> LReLU on top, BN of their sum.

    The BatchNorm (no affine part, eps 1e-6 as in the official model) acts on
    the sum of two activated branches, so it cannot be folded into either conv.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels, eps=1e-6, affine=False)

    def forward(self, x: Tensor) -> Tensor:
        x1 = leaky_relu(self.conv1(x))
        x2 = leaky_relu(self.conv2(x1))
        return self.norm(x1 + x2)


class DownDimBlock(nn.Module):
    """NeuFlow v1 channel reducer: LReLU on the concatenated input, then a 1x1 ResidualNormBlock."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_block = ResidualNormBlock(in_channels, out_channels, 1, 1, 0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_block(leaky_relu(x))


class Conv3x3LeakyReLU(nn.Module):
    """3x3 same-size conv + LReLU; wrapped so its weights live under `<name>.conv`."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return leaky_relu(self.conv(x))
