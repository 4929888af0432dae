"""NeuFlow v1 (Zhang et al., 2024): global matching and flow self-attention at 1/16,
one local-correlation refinement step at 1/8, convex upsampling to full size."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import CrossAttentionLayerNorm, FlowAttention
from .backbones import BackboneV1
from .base import EncodedImages, FlowNetwork, check_pair
from .blocks import ResidualNormBlock
from .correlation import (
    correlation_matrix,
    global_matching_flow,
    local_correlation,
    warp_features,
)
from .refinement import LocalRefinement
from .upsampling import ConvexUpsampler, upsample2x

BACKBONE_CHANNELS = 90
FEATURE_CHANNELS = BACKBONE_CHANNELS + 2
LOCAL_RADIUS = 3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class NeuFlowV1(FlowNetwork):
    """NeuFlow v1 with the official checkpoints' module layout (strict state-dict loading)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = BackboneV1()
        self.cross_attn_s16 = CrossAttentionLayerNorm(FEATURE_CHANNELS)
        self.flow_attn_s16 = FlowAttention(FEATURE_CHANNELS)
        self.merge_s8 = nn.Sequential(
            nn.Conv2d(2 * FEATURE_CHANNELS, 180, 3, 1, 1, bias=False),
            nn.GELU(),
            nn.Conv2d(180, BACKBONE_CHANNELS, 3, 1, 1, bias=False),
        )
        self.refine_s8 = LocalRefinement((2 * LOCAL_RADIUS + 1) ** 2 + BACKBONE_CHANNELS + 2)
        self.conv_s8 = ResidualNormBlock(3, BACKBONE_CHANNELS, 8, 8, 0)
        self.upsample_s1 = ConvexUpsampler(2 + BACKBONE_CHANNELS)

    def _encode(self, images: Tensor) -> EncodedImages:
        normalized = (images / 255.0 - self.mean) / self.std
        f16, f8 = self.backbone(normalized)
        return EncodedImages(
            features_s16=self._with_positions(f16),
            features_s8=self._with_positions(f8),
            upsample_context=self.conv_s8(normalized),
        )

    def _with_positions(self, features: Tensor) -> Tensor:
        positions = self.grids.unit_positions(*features.shape[-2:], like=features)
        positions = positions.unsqueeze(0).expand(features.shape[0], -1, -1, -1)
        return torch.cat([features, positions], dim=1)

    def decode(self, encoded0: EncodedImages, encoded1: EncodedImages) -> Tensor:
        """Flow frame 0 -> frame 1 [B, 2, H, W]."""
        check_pair(encoded0, encoded1)
        batch = len(encoded0)
        stacked16 = self.cross_attn_s16(torch.cat([encoded0.features_s16, encoded1.features_s16]))
        grid16 = self.grids.pixel_grid(*stacked16.shape[-2:], like=stacked16)
        correlation16 = correlation_matrix(stacked16[:batch], stacked16[batch:])
        flow = global_matching_flow(correlation16, grid16)
        flow = self.flow_attn_s16(stacked16[:batch], flow)

        flow = upsample2x(flow) * 2
        stacked8 = torch.cat([encoded0.features_s8, encoded1.features_s8])
        stacked8 = self.merge_s8(torch.cat([stacked8, upsample2x(stacked16)], dim=1))
        features0, features1 = stacked8[:batch], stacked8[batch:]
        grid8 = self.grids.pixel_grid(*flow.shape[-2:], like=flow)
        warped = warp_features(features1, flow, grid8)
        correlation = local_correlation(features0, warped, LOCAL_RADIUS)
        flow = self.refine_s8(correlation, features0, flow)
        return self.upsample_s1(flow, encoded0.upsample_context)
