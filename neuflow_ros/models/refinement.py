"""Convolutional flow-update heads run after matching."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional

from .blocks import Conv3x3LeakyReLU

ITERATIVE_CONTEXT_LIMIT = 4.0


class IterativeRefinement(nn.Module):
    """NeuFlow v2 recurrent step: predicts a flow update and a new bounded iterative context.

    Input is [correlation lookup, context, iterative context, flow, constant
    channel]; the constant equals the lookup radius (a trait of the trained
    weights, kept for checkpoint compatibility).
    """

    def __init__(self, in_channels: int, inter_channels: int, context_channels: int) -> None:
        super().__init__()
        self.conv1 = Conv3x3LeakyReLU(in_channels, 128, bias=False)
        self.conv2 = Conv3x3LeakyReLU(128, inter_channels, bias=False)
        self.conv_layers = nn.ModuleList(
            Conv3x3LeakyReLU(inter_channels, inter_channels, bias=False) for _ in range(5)
        )
        self.conv3 = nn.Conv2d(inter_channels, 2 + context_channels, 3, 1, 1)

    def forward(
        self,
        correlation: Tensor,
        context: Tensor,
        iterative_context: Tensor,
        flow: Tensor,
        constant: Tensor,
    ) -> tuple[Tensor, Tensor]:
        x = torch.cat(
            [correlation, context, iterative_context, flow.to(context.dtype), constant], dim=1
        )
        x = self.conv2(self.conv1(x))
        for layer in self.conv_layers:
            x = layer(x)
        update = self.conv3(x)
        limit = ITERATIVE_CONTEXT_LIMIT
        new_context = functional.hardtanh(update[:, 2:], -limit, limit)
        # In the flow's own precision, which may be finer than the network's.
        return flow + update[:, :2].to(flow.dtype), new_context


class LocalRefinement(nn.Module):
    """NeuFlow v1 single step: flow update from local correlation, frame-0 features and flow."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv1 = Conv3x3LeakyReLU(in_channels, 96, bias=True)
        self.conv_layers = nn.ModuleList(Conv3x3LeakyReLU(96, 96, bias=True) for _ in range(6))
        self.conv2 = Conv3x3LeakyReLU(96, 64, bias=True)
        self.conv3 = Conv3x3LeakyReLU(64, 32, bias=True)
        self.conv4 = nn.Conv2d(32, 2, 3, 1, 1)

    def forward(self, correlation: Tensor, features0: Tensor, flow: Tensor) -> Tensor:
        x = self.conv1(torch.cat([correlation, features0, flow], dim=1))
        for layer in self.conv_layers:
            x = layer(x)
        return flow + self.conv4(self.conv3(self.conv2(x)))
