"""Coordinate and position tensors that depend only on a feature-map size.

NeuFlow needs pixel-coordinate grids (matching, lookup, warping) and position
channels at every call. The official code builds them once for a fixed batch
size and resolution, which silently breaks when a camera changes resolution.
Here they are cached per (kind, size, device, dtype) instead, so a changed
input simply builds (and caches) new ones; batch size never matters because
callers broadcast or expand the cached tensors.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor


class GridCache:
    """Small memo of derived constant tensors, bounded so a stream of odd sizes cannot leak.

    The least recently used entry goes first, so the grids of the sizes in use
    survive a burst of odd sizes. Nothing built during a CUDA graph capture is
    kept: its values exist only once the graph replays, and not at all when the
    capture fails, so later eager calls would read uninitialised memory.
    """

    def __init__(self, max_entries: int = 32) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple, Tensor] = OrderedDict()

    def get(self, key: tuple, build: Callable[[], Tensor]) -> Tensor:
        tensor = self._entries.get(key)
        if tensor is not None:
            self._entries.move_to_end(key)
            return tensor
        tensor = build()
        if not _capturing(tensor):
            self._entries[key] = tensor
            if len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return tensor

    def tensors(self) -> list[Tensor]:
        """Every cached tensor: a captured CUDA graph reads them by address, so it must
        keep them alive even after this cache drops them."""
        return list(self._entries.values())

    def pixel_grid(self, height: int, width: int, like: Tensor) -> Tensor:
        """[2, h, w] holding (x, y) pixel indices: channel 0 horizontal, as flow is."""
        key = ("pixel", height, width, like.device, like.dtype)
        return self.get(key, lambda: _pixel_grid(height, width, like))

    def centered_positions(self, height: int, width: int, like: Tensor) -> Tensor:
        """[2, h, w]: (row - h/2, column - w/2), NeuFlow v2's position channels."""
        key = ("centered", height, width, like.device, like.dtype)
        return self.get(key, lambda: _centered_positions(height, width, like))

    def unit_positions(self, height: int, width: int, like: Tensor) -> Tensor:
        """[2, h, w]: (row / (h-1), column / (w-1)), NeuFlow v1's position channels."""
        key = ("unit", height, width, like.device, like.dtype)
        return self.get(key, lambda: _unit_positions(height, width, like))


def _capturing(tensor: Tensor) -> bool:
    return tensor.is_cuda and torch.cuda.is_current_stream_capturing()


def _row_col(height: int, width: int, like: Tensor) -> tuple[Tensor, Tensor]:
    rows = torch.arange(height, device=like.device, dtype=torch.float64)
    cols = torch.arange(width, device=like.device, dtype=torch.float64)
    return torch.meshgrid(rows, cols, indexing="ij")


def _pixel_grid(height: int, width: int, like: Tensor) -> Tensor:
    rows, cols = _row_col(height, width, like)
    return torch.stack([cols, rows]).to(like.dtype)


def _centered_positions(height: int, width: int, like: Tensor) -> Tensor:
    rows, cols = _row_col(height, width, like)
    return torch.stack([rows - height / 2, cols - width / 2]).to(like.dtype)


def _unit_positions(height: int, width: int, like: Tensor) -> Tensor:
    rows, cols = _row_col(height, width, like)
    return torch.stack([rows / (height - 1), cols / (width - 1)]).to(like.dtype)
