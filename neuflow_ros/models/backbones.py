"""Per-image CNN feature extractors of NeuFlow v2 and v1 (1/8 and 1/16 scale outputs).

Both read the image at several average-pooled scales with strided convs so
each output scale sees both fine and coarse input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional

from .blocks import ConvNormBlock, DownDimBlock, ResidualNormBlock


class BackboneV2(nn.Module):
    """Returns (f16 [N, 190, H/16, W/16], f8 [N, 192, H/8, W/8]) for images scaled to 0..1."""

    def __init__(self) -> None:
        super().__init__()
        self.block_8_1 = ConvNormBlock(3, 256, 8, 4, 2)
        self.block_8_2 = ConvNormBlock(3, 128, 6, 2, 2)
        self.block_cat_8 = ConvNormBlock(384, 192, 3, 1, 1)
        self.block_16_1 = ConvNormBlock(3, 128, 6, 2, 2)
        self.block_8_16 = ConvNormBlock(192, 128, 6, 2, 2)
        self.block_cat_16 = ConvNormBlock(256, 190, 3, 1, 1)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        half = functional.avg_pool2d(images, 2)
        quarter = functional.avg_pool2d(half, 2)
        eighth = functional.avg_pool2d(quarter, 2)
        f8 = self.block_cat_8(torch.cat([self.block_8_1(half), self.block_8_2(quarter)], dim=1))
        f16 = self.block_cat_16(torch.cat([self.block_16_1(eighth), self.block_8_16(f8)], dim=1))
        return f16, f8


class BackboneV1(nn.Module):
    """Returns (f16 [N, 90, H/16, W/16], f8 [N, 90, H/8, W/8]) for mean/std-normalized images."""

    def __init__(self) -> None:
        super().__init__()
        self.block1_1 = ResidualNormBlock(3, 90, 8, 8, 0)
        self.block1_2 = ResidualNormBlock(3, 90, 8, 4, 2)
        self.block1_3 = ResidualNormBlock(3, 90, 8, 2, 3)
        self.block1_4 = ResidualNormBlock(3, 90, 7, 1, 3)
        self.block1_dd = DownDimBlock(360, 90)
        self.block1_ds = ResidualNormBlock(90, 90, 2, 2, 0)
        self.block2 = ResidualNormBlock(3, 90, 7, 1, 3)
        self.block2_dd = DownDimBlock(180, 90)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        half = functional.avg_pool2d(images, 2)
        quarter = functional.avg_pool2d(half, 2)
        eighth = functional.avg_pool2d(quarter, 2)
        sixteenth = functional.avg_pool2d(eighth, 2)
        branches = [
            self.block1_1(images),
            self.block1_2(half),
            self.block1_3(quarter),
            self.block1_4(eighth),
        ]
        f8 = self.block1_dd(torch.cat(branches, dim=1))
        f16 = self.block2_dd(torch.cat([self.block1_ds(f8), self.block2(sixteenth)], dim=1))
        return f16, f8
