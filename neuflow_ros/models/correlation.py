"""Feature matching: global matching, the all-pairs correlation volume and its lookup,
and v1's local correlation, all in plain PyTorch (no custom CUDA extension)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional


def correlation_matrix(features0: Tensor, features1: Tensor) -> Tensor:
    """[B, L, L]: scaled dot products between every frame-0 and every frame-1 pixel.

    v2 uses the same matrix for global matching and as its 1/16 correlation
    volume, so callers compute it once and share it. Scaled before the product,
    which keeps fp16 in range (see single_head_attention).
    """
    channels = features0.shape[1]
    tokens0 = features0.flatten(2).transpose(1, 2) * (1.0 / math.sqrt(channels))
    tokens1 = features1.flatten(2)
    return torch.matmul(tokens0, tokens1)


def global_matching_flow(correlation: Tensor, pixel_grid: Tensor) -> Tensor:
    """Soft-argmax correspondence minus own position: flow [B, 2, h, w] from a [B, L, L] matrix."""
    height, width = pixel_grid.shape[-2:]
    grid_tokens = pixel_grid.flatten(1).transpose(0, 1)
    correspondence = torch.matmul(torch.softmax(correlation, dim=-1), grid_tokens)
    flow_tokens = correspondence - grid_tokens
    return flow_tokens.transpose(1, 2).reshape(correlation.shape[0], 2, height, width)


def normalize_coordinates(coords: Tensor, height: int, width: int) -> Tensor:
    """Pixel (x, y) in the last axis -> grid_sample's [-1, 1] range for align_corners=True.

    Python scalars only: a scale tensor built from a list would be a host-to-device
    copy, which syncs the host every call and makes CUDA graph capture fail.
    """
    x = coords[..., 0] * (2.0 / (width - 1)) - 1.0
    y = coords[..., 1] * (2.0 / (height - 1)) - 1.0
    return torch.stack([x, y], dim=-1)


class CorrelationVolume:
    """All-pairs correlation stored as one h x w map per source pixel, sampled around the flow.

    Built once per scale and reused by every refinement iteration: the maps do
    not change while the flow is refined, only where they are read.
    """

    def __init__(self, correlation: Tensor, height: int, width: int) -> None:
        self.batch = correlation.shape[0]
        self.height = height
        self.width = width
        self.maps = correlation.reshape(self.batch * height * width, height * width)

    def lookup(self, flow: Tensor, pixel_grid: Tensor, radius: int) -> Tensor:
        """[B, (2r+1)^2, h, w]: bilinear samples at pixel + flow + (dx, dy), dx outer, dy inner.

        Same values as grid_sample (align_corners=True, zeros outside), but all
        offsets are whole pixels, so the bilinear weights are shared by the
        window: gather one (2r+2)^2 block per pixel and blend it once. This is
        several times faster than grid_sample on B*h*w tiny maps, and the
        fractional part is taken in float32, which keeps sub-pixel precision in
        half-precision models.
        """
        coords = (pixel_grid.float() + flow.float()).permute(0, 2, 3, 1).reshape(-1, 2)
        corner = torch.floor(coords)
        fraction = (coords - corner).to(self.maps.dtype)
        window = self._windows(corner.long(), radius)
        fx = fraction[:, 0].view(-1, 1, 1)
        fy = fraction[:, 1].view(-1, 1, 1)
        top = torch.lerp(window[:, :-1, :-1], window[:, :-1, 1:], fx)
        bottom = torch.lerp(window[:, 1:, :-1], window[:, 1:, 1:], fx)
        samples = torch.lerp(top, bottom, fy).transpose(1, 2)
        num_samples = samples.shape[1] * samples.shape[2]
        return samples.reshape(self.batch, self.height, self.width, num_samples).permute(0, 3, 1, 2)

    def _windows(self, corner: Tensor, radius: int) -> Tensor:
        """[N, S, S] values (rows y, columns x) from corner - r to corner + r + 1; 0 outside."""
        steps = torch.arange(-radius, radius + 2, device=corner.device)
        xs = corner[:, :1] + steps
        ys = corner[:, 1:] + steps
        inside_x = (xs >= 0) & (xs < self.width)
        inside_y = (ys >= 0) & (ys < self.height)
        rows = ys.clamp(0, self.height - 1) * self.width
        cols = xs.clamp(0, self.width - 1)
        size = steps.numel()
        index = (rows[:, :, None] + cols[:, None, :]).view(-1, size * size)
        return self.maps.gather(1, index).view(-1, size, size) * (
            inside_y[:, :, None] & inside_x[:, None, :]
        )


def warp_features(features: Tensor, flow: Tensor, pixel_grid: Tensor) -> Tensor:
    """Sample `features` at pixel + flow (bilinear, zeros outside, align_corners=True).

    Sampled in float32 whatever the model's precision: fp16 resolves a
    normalized coordinate near 1 to 2^-10, about a tenth of a 1/8-scale pixel
    at 640 px, and the maps are small enough for the conversion to be cheap.
    """
    height, width = features.shape[-2:]
    coords = (pixel_grid.float() + flow.float()).permute(0, 2, 3, 1)
    warped = functional.grid_sample(
        features.float(),
        normalize_coordinates(coords, height, width),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )
    return warped.to(features.dtype)


def local_correlation(features0: Tensor, features1: Tensor, radius: int) -> Tensor:
    """[B, (2r+1)^2, h, w] unnormalized channel dot products with features1 shifted by (dy, dx).

    Channels are ordered dy outer, dx inner; outside the image counts as zero.
    One shifted product per offset keeps memory at O(B*C*h*w), unlike unfold,
    which would materialize every window at once.
    """
    height, width = features0.shape[-2:]
    padded = functional.pad(features1, (radius, radius, radius, radius))
    size = 2 * radius + 1
    products = [
        (features0 * padded[:, :, dy : dy + height, dx : dx + width]).sum(dim=1)
        for dy in range(size)
        for dx in range(size)
    ]
    return torch.stack(products, dim=1)
