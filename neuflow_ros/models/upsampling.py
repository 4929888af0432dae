"""Upsampling between scales: nearest x2 (1/16 -> 1/8) and learned convex x8 (1/8 -> full)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional

UPSAMPLE_FACTOR = 8
NEIGHBOURS = 9


def upsample2x(x: Tensor) -> Tensor:
    """Nearest-neighbour x2, used between the 1/16 and 1/8 stages."""
    return functional.interpolate(x, scale_factor=2, mode="nearest")


class ConvexUpsampler(nn.Module):
    """Each full-resolution flow vector is a softmax-weighted mix of its cell's 3x3 neighbours.

    The weights are predicted from the 1/8 flow and an image-context map, which
    keeps motion boundaries sharp where bilinear upsampling would blur them.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        factor_squared = UPSAMPLE_FACTOR * UPSAMPLE_FACTOR
        self.conv1 = nn.Conv2d(in_channels, 256, 3, 1, 1)
        self.conv2 = nn.Conv2d(256, 512, 3, 1, 1)
        self.conv3 = nn.Conv2d(512, factor_squared * NEIGHBOURS, 1, 1, 0)

    def forward(self, flow: Tensor, context: Tensor) -> Tensor:
        """flow [B, 2, h, w] in 1/8-scale pixels + context [B, C, h, w] -> flow [B, 2, 8h, 8w].

        The mix is computed in the flow's precision (float32 from v2's refinement).
        """
        batch, _, height, width = flow.shape
        factor = UPSAMPLE_FACTOR
        hidden = functional.relu(self.conv1(torch.cat([flow.to(context.dtype), context], dim=1)))
        mask = self.conv3(functional.relu(self.conv2(hidden)))
        weights = torch.softmax(mask.view(batch, 1, NEIGHBOURS, factor, factor, height, width), 2)
        neighbours = functional.unfold(flow, 3, padding=1)
        neighbours = neighbours.view(batch, 2, NEIGHBOURS, 1, 1, height, width)
        cells = (weights * neighbours).sum(dim=2)
        full = cells.permute(0, 1, 4, 2, 5, 3).reshape(batch, 2, height * factor, width * factor)
        return full * factor
