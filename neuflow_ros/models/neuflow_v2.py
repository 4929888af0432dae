"""NeuFlow v2 (Zhang et al., 2024): global matching at 1/16, recurrent refinement at
1/16 and 1/8 on all-pairs correlation volumes, convex upsampling to full size."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional

from .attention import CrossAttentionBatchNorm
from .backbones import BackboneV2
from .base import EncodedImages, FlowNetwork, check_pair
from .blocks import ConvNormBlock
from .correlation import CorrelationVolume, correlation_matrix, global_matching_flow
from .refinement import IterativeRefinement
from .upsampling import ConvexUpsampler, upsample2x

FEATURE_CHANNELS = 128
LOOKUP_RADIUS = 4
CONTEXT_CHANNELS = 64
ITERATIVE_CONTEXT_CHANNELS = 64
BACKBONE_CHANNELS = CONTEXT_CHANNELS + FEATURE_CHANNELS
LOOKUP_CHANNELS = (2 * LOOKUP_RADIUS + 1) ** 2
REFINE_IN_CHANNELS = LOOKUP_CHANNELS + CONTEXT_CHANNELS + ITERATIVE_CONTEXT_CHANNELS + 2 + 1


def _merge_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Conv -> GELU -> Conv -> BN, fusing a 1/8 map with an upsampled 1/16 map."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
        nn.GELU(),
        nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class NeuFlowV2(FlowNetwork):
    """NeuFlow v2 with the official checkpoints' module layout (strict state-dict loading)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = BackboneV2()
        self.cross_attn_s16 = CrossAttentionBatchNorm(BACKBONE_CHANNELS)
        self.merge_s8 = _merge_block(2 * FEATURE_CHANNELS, FEATURE_CHANNELS)
        self.context_merge_s8 = _merge_block(2 * CONTEXT_CHANNELS, CONTEXT_CHANNELS)
        self.refine_s16 = IterativeRefinement(REFINE_IN_CHANNELS, 128, ITERATIVE_CONTEXT_CHANNELS)
        self.refine_s8 = IterativeRefinement(REFINE_IN_CHANNELS, 96, ITERATIVE_CONTEXT_CHANNELS)
        self.conv_s8 = ConvNormBlock(3, FEATURE_CHANNELS, 8, 8, 0)
        self.upsample_s8 = ConvexUpsampler(2 + FEATURE_CHANNELS)

    def forward(self, img0: Tensor, img1: Tensor, iters_s16: int = 1, iters_s8: int = 8) -> Tensor:
        """Flow img0 -> img1, [B, 2, H, W] in pixels, for RGB images with values 0..255."""
        return super().forward(img0, img1, iters_s16=iters_s16, iters_s8=iters_s8)

    def _encode(self, images: Tensor) -> EncodedImages:
        scaled = images / 255.0
        f16, f8 = self.backbone(scaled)
        positions = self.grids.centered_positions(*f16.shape[-2:], like=f16)
        positions = positions.unsqueeze(0).expand(f16.shape[0], -1, -1, -1)
        return EncodedImages(
            features_s16=torch.cat([f16, positions], dim=1),
            features_s8=f8,
            upsample_context=self.conv_s8(scaled),
        )

    def decode(
        self,
        encoded0: EncodedImages,
        encoded1: EncodedImages,
        iters_s16: int = 1,
        iters_s8: int = 8,
    ) -> Tensor:
        """Flow frame 0 -> frame 1 [B, 2, H, W], float32 at any model precision (see
        `_refine`); more iterations trade time for accuracy."""
        check_pair(encoded0, encoded1)
        if iters_s16 < 0 or iters_s8 < 0:
            raise ValueError(f"iteration counts must be >= 0, got {iters_s16=}, {iters_s8=}")
        batch = len(encoded0)
        stacked16 = self.cross_attn_s16(torch.cat([encoded0.features_s16, encoded1.features_s16]))
        context16 = functional.relu(stacked16[:batch, :CONTEXT_CHANNELS])
        features16 = stacked16[:, CONTEXT_CHANNELS:]

        correlation16 = correlation_matrix(features16[:batch], features16[batch:])
        grid16 = self.grids.pixel_grid(*features16.shape[-2:], like=features16)
        flow = global_matching_flow(correlation16, grid16)
        flow = self._refine(self.refine_s16, correlation16, flow, context16, iters_s16)

        flow = upsample2x(flow) * 2
        context8 = functional.relu(encoded0.features_s8[:, :CONTEXT_CHANNELS])
        context8 = self.context_merge_s8(torch.cat([context8, upsample2x(context16)], dim=1))
        features8 = torch.cat(
            [encoded0.features_s8[:, CONTEXT_CHANNELS:], encoded1.features_s8[:, CONTEXT_CHANNELS:]]
        )
        features8 = self.merge_s8(torch.cat([features8, upsample2x(features16)], dim=1))
        correlation8 = correlation_matrix(features8[:batch], features8[batch:])
        flow = self._refine(self.refine_s8, correlation8, flow, context8, iters_s8)
        return self.upsample_s8(flow, encoded0.upsample_context)

    def _refine(
        self,
        refinement: IterativeRefinement,
        correlation: Tensor,
        flow: Tensor,
        context: Tensor,
        iterations: int,
    ) -> Tensor:
        """Run `iterations` refinement steps; the iterative context starts at zero per scale.

        The flow is accumulated in float32 whatever the model's precision: in
        fp16 a 1/8-scale flow of 32 px moves in 1/32 px steps, a quarter pixel
        at full resolution, so small updates would be rounded away.
        """
        flow = flow.float()
        volume = CorrelationVolume(correlation, *flow.shape[-2:])
        grid = self.grids.pixel_grid(*flow.shape[-2:], like=flow)
        batch, _, height, width = flow.shape
        iterative_context = context.new_zeros(batch, ITERATIVE_CONTEXT_CHANNELS, height, width)
        constant = context.new_full((batch, 1, height, width), float(LOOKUP_RADIUS))
        for _ in range(iterations):
            lookup = volume.lookup(flow, grid, LOOKUP_RADIUS)
            flow, iterative_context = refinement(lookup, context, iterative_context, flow, constant)
        return flow
