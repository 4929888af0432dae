"""What NeuFlow v1 and v2 share at their boundary: input checks, the per-image
encoding, and forward() expressed as encode + decode.

The split exists for camera streams: every frame is encoded once and its
encoding serves as frame 1 of one pair and frame 0 of the next.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .grids import GridCache

SIZE_MULTIPLE = 16
MIN_SIZE = 32


@dataclass(frozen=True)
class EncodedImages:
    """Everything NeuFlow computes from single images; batch dimension first in every field.

    features_s16 / features_s8: backbone outputs (with position channels);
    upsample_context: the image-context map the convex upsampler uses when this
    image is frame 0.
    """

    features_s16: Tensor
    features_s8: Tensor
    upsample_context: Tensor

    def __len__(self) -> int:
        return self.features_s16.shape[0]

    def split(self, first_size: int) -> tuple[EncodedImages, EncodedImages]:
        """Views of items [:first_size] and [first_size:]."""
        return (
            EncodedImages(*(field[:first_size] for field in self._fields())),
            EncodedImages(*(field[first_size:] for field in self._fields())),
        )

    def _fields(self) -> tuple[Tensor, Tensor, Tensor]:
        return (self.features_s16, self.features_s8, self.upsample_context)


def check_images(images: Tensor, name: str) -> None:
    """Reject inputs NeuFlow cannot process with a message that says what to change."""
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must have shape [B, 3, H, W] (RGB), got {list(images.shape)}")
    if not (images.is_floating_point() or images.dtype == torch.uint8):
        raise TypeError(f"{name} must be a float (or uint8) tensor, got {images.dtype}")
    height, width = images.shape[-2:]
    if (
        height % SIZE_MULTIPLE
        or width % SIZE_MULTIPLE
        or height < MIN_SIZE
        or width < MIN_SIZE
        or images.shape[0] == 0
    ):
        raise ValueError(
            f"{name}: NeuFlow needs a non-empty batch and height/width that are multiples of "
            f"{SIZE_MULTIPLE} and at least {MIN_SIZE}; got {images.shape[0]} images of "
            f"{height}x{width} (HxW). Pad (edge replication) or resize first."
        )


def check_pair(encoded0: EncodedImages, encoded1: EncodedImages) -> None:
    if encoded0.features_s16.shape != encoded1.features_s16.shape:
        raise ValueError(
            "encoded frames differ in batch size or resolution: "
            f"{list(encoded0.features_s16.shape)} vs {list(encoded1.features_s16.shape)}"
        )


class FlowNetwork(nn.Module, ABC):
    """Base of both NeuFlow versions: subclasses implement `_encode` and `decode`."""

    def __init__(self) -> None:
        super().__init__()
        self.grids = GridCache()

    def forward(self, img0: Tensor, img1: Tensor, **decode_options: int) -> Tensor:
        """Flow img0 -> img1, [B, 2, H, W] in pixels, for RGB images with values 0..255."""
        check_images(img0, "img0")
        check_images(img1, "img1")
        if img0.shape != img1.shape:
            raise ValueError(
                f"img0 and img1 differ in shape: {list(img0.shape)} vs {list(img1.shape)}"
            )
        encoded0, encoded1 = self.encode(torch.cat([img0, img1])).split(img0.shape[0])
        return self.decode(encoded0, encoded1, **decode_options)

    def encode(self, images: Tensor) -> EncodedImages:
        """Per-image part of the network; depends on each image alone, so batches may be split."""
        check_images(images, "images")
        reference = next(self.parameters())
        # Plain NCHW throughout: channels_last pays only when weights and every
        # activation use it, which the decode's concatenations would undo.
        images = images.to(device=reference.device, dtype=reference.dtype)
        return self._encode(images.contiguous())

    @abstractmethod
    def _encode(self, images: Tensor) -> EncodedImages:
        """Images already on the model's device and dtype, values 0..255."""

    @abstractmethod
    def decode(self, encoded0: EncodedImages, encoded1: EncodedImages) -> Tensor:
        """Pairwise part: flow [B, 2, H, W] from frame 0 to frame 1."""
