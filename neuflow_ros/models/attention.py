"""Transformer pieces used at 1/16 scale: cross attention between frames, v1's flow attention.

Both frames travel stacked along the batch ([frame-0 items; frame-1 items]),
so a frame's "partner" is the same tensor with its two halves swapped.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def single_head_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d)) v over token axis 1.

    q is scaled before the product: the raw q.k of v2's position channels
    (up to +-w/32) exceeds the fp16 range at large sizes, the scaled score
    does not. In fp32 this only reorders the rounding.
    """
    scores = torch.matmul(query * (1.0 / math.sqrt(query.shape[-1])), key.transpose(1, 2))
    return torch.matmul(torch.softmax(scores, dim=-1), value)


def swap_frames(stacked: Tensor) -> Tensor:
    """[frame0; frame1] -> [frame1; frame0] along the batch axis."""
    half = stacked.shape[0] // 2
    return torch.cat([stacked[half:], stacked[:half]])


def to_tokens(features: Tensor) -> Tensor:
    """[B, C, h, w] -> [B, h*w, C], row-major over pixels."""
    return features.flatten(2).transpose(1, 2)


def from_tokens(tokens: Tensor, height: int, width: int) -> Tensor:
    """Inverse of `to_tokens`."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


class TransformerLayer(nn.Module):
    """One single-head attention layer with a merge, two LayerNorms and a residual MLP update."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.merge = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(2 * dim, 2 * dim, bias=False),
            nn.GELU(),
            nn.Linear(2 * dim, dim, bias=False),
        )
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor, partner: Tensor) -> Tensor:
        message = single_head_attention(
            self.q_proj(tokens), self.k_proj(partner), self.v_proj(partner)
        )
        message = self.norm1(self.merge(message))
        message = self.norm2(self.mlp(torch.cat([tokens, message], dim=-1)))
        return tokens + message


class _CrossAttentionLayers(nn.Module):
    """Stack of TransformerLayers where each frame attends to the other one."""

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(dim) for _ in range(num_layers))

    def attend(self, tokens: Tensor) -> Tensor:
        for layer in self.layers:
            tokens = layer(tokens, swap_frames(tokens))
        return tokens


class CrossAttentionBatchNorm(_CrossAttentionLayers):
    """NeuFlow v2 cross attention: the final BatchNorm acts on the feature map.

    That BN follows attention, not a convolution, so `fold_batchnorm` keeps it.
    """

    def __init__(self, dim: int, num_layers: int = 2) -> None:
        super().__init__(dim, num_layers)
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, stacked: Tensor) -> Tensor:
        height, width = stacked.shape[-2:]
        tokens = self.attend(to_tokens(stacked))
        return self.norm(from_tokens(tokens, height, width))


class CrossAttentionLayerNorm(_CrossAttentionLayers):
    """NeuFlow v1 cross attention: the final LayerNorm (eps 1e-6) acts on the tokens."""

    def __init__(self, dim: int, num_layers: int = 2) -> None:
        super().__init__(dim, num_layers)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, stacked: Tensor) -> Tensor:
        height, width = stacked.shape[-2:]
        tokens = self.norm(self.attend(to_tokens(stacked)))
        return from_tokens(tokens, height, width)


class FlowAttention(nn.Module):
    """NeuFlow v1: frame-0 self-attention that spreads matched flow to similar pixels.

    The attended flow replaces the input flow (no residual), which fills in
    occluded or textureless areas where global matching is unreliable.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)

    def forward(self, features: Tensor, flow: Tensor) -> Tensor:
        tokens = to_tokens(features)
        flow_tokens = to_tokens(flow)
        attended = single_head_attention(self.q_proj(tokens), self.k_proj(tokens), flow_tokens)
        return from_tokens(attended, *flow.shape[-2:])
