"""Camera frames onto the compute device in network layout, and flow back off it.

Frames cross the bus as uint8 (a quarter of the float32 bytes) through pinned
staging buffers, copied asynchronously on a stream of their own; colour conversion,
resizing and padding then run on the device, where they are nearly free.
Flow comes back through pinned buffers too, without blocking: the host waits
only when the caller asks for the array, so the next frames can be staged
meanwhile. Buffers are cached per shape, so a steady stream allocates nothing
per frame (intermediate tensors come from PyTorch's caching allocator).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional

from neuflow_ros.flow.bounded_cache import BoundedCache
from neuflow_ros.flow.frame_geometry import FrameGeometry

_MAX_CACHED_SHAPES = 8
_MAX_CACHED_BYTES = 256 * 2**20
"""Per cache: one 4K RGB batch of two frames is 50 MB, so several sizes fit, while
frames of ever new huge sizes cannot pin more than this (plus the shape in use)."""
_MAX_FREE_DOWNLOAD_BUFFERS = 2
"""Per shape: one download in flight while the previous one is read is the steady state."""


@dataclass
class _StagingBuffers:
    host: torch.Tensor
    device: torch.Tensor
    copied: torch.cuda.Event | None
    """Marks the end of the last asynchronous copy out of ``host``, which must
    not be overwritten before it."""
    consumed: torch.cuda.Event | None
    """Marks the end of the compute stream's last read of ``device``, which the
    next copy into it must wait for."""


class FrameUploader:
    """Turns uint8 HxW[xC] frames into a float RGB batch at the network grid."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._buffers: BoundedCache[_StagingBuffers] = BoundedCache(
            _MAX_CACHED_SHAPES, max_weight=_MAX_CACHED_BYTES
        )
        # Copies run on a stream of their own, so a frame's upload never waits
        # behind network kernels still queued on the compute stream.
        self._copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def upload(
        self,
        frames: Sequence[np.ndarray],
        color_order: str,
        geometry: FrameGeometry,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """Frames of one size and colour order -> ``[N, 3, grid_h, grid_w]``, RGB, 0..255."""
        channels = 1 if color_order == "mono" else 3
        shape = (len(frames), geometry.input_height, geometry.input_width, channels)
        buffers = self._buffers.get_or_create(
            shape, lambda: self._allocate(shape), weight=int(np.prod(shape))
        )
        if buffers.copied is not None:
            buffers.copied.synchronize()
        staging = buffers.host.numpy()
        for slot, frame in zip(staging, frames, strict=True):
            # numpy copies any strided view (padded rows, dropped alpha) in place.
            slot[...] = frame if frame.ndim == 3 else frame[:, :, None]
        compute_stream = None
        if self._copy_stream is not None:
            compute_stream = torch.cuda.current_stream(self._device)
            self._copy_stream.wait_event(buffers.consumed)
            with torch.cuda.stream(self._copy_stream):
                buffers.device.copy_(buffers.host, non_blocking=True)
                buffers.copied.record(self._copy_stream)
            compute_stream.wait_event(buffers.copied)
        # NHWC uint8 to NCHW float in one copy, the layout the networks run in.
        images = buffers.device.permute(0, 3, 1, 2).to(
            torch.float32, memory_format=torch.contiguous_format
        )
        if compute_stream is not None:
            buffers.consumed.record(compute_stream)
        images = _fit_to_grid(images, geometry)
        if channels == 1:
            images = images.expand(-1, 3, -1, -1)
        elif color_order == "bgr":
            images = images.flip(1)
        return images.to(dtype).contiguous()

    def _allocate(self, shape: tuple[int, ...]) -> _StagingBuffers:
        if self._copy_stream is None:
            host = torch.empty(shape, dtype=torch.uint8)
            return _StagingBuffers(host=host, device=host, copied=None, consumed=None)
        device = torch.empty(shape, dtype=torch.uint8, device=self._device)
        # The allocator must not hand this memory out again while a copy is queued.
        device.record_stream(self._copy_stream)
        return _StagingBuffers(
            host=torch.empty(shape, dtype=torch.uint8, pin_memory=True),
            device=device,
            copied=torch.cuda.Event(blocking=True),
            consumed=torch.cuda.Event(),
        )


class FlowDownloader:
    """Turns network flow into float32 ``[N, h, w, 2]`` arrays in input pixels."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._free_pinned: BoundedCache[list[torch.Tensor]] = BoundedCache(
            _MAX_CACHED_SHAPES, max_weight=_MAX_CACHED_BYTES
        )

    def download(
        self, flow: torch.Tensor, geometry: FrameGeometry, output_grid: str
    ) -> Callable[[], np.ndarray]:
        """``flow`` is ``[N, 2, grid_h, grid_w]``, in any float dtype; it is not kept.

        Returns the function to call, once, for the array (the caller's own:
        nothing here writes to it again). On CUDA the copy is queued behind
        the work that computes ``flow``, and the host waits for it only there.
        """
        output_width, output_height = geometry.output_size(output_grid)
        if not geometry.resized:
            flow = flow[:, :, :output_height, :output_width]
        elif (output_width, output_height) != (geometry.grid_width, geometry.grid_height):
            flow = functional.interpolate(
                flow.float(), size=(output_height, output_width), mode="bilinear",
                align_corners=False,
            )
        # One copy turns the network's NCHW (fp16 or fp32) into the float32 NHWC the
        # caller gets; a conversion and then a separate layout copy would be two. Into
        # a tensor of its own: ``.to(float32, memory_format=contiguous_format)`` returns
        # fp32 flow as the permuted view itself (PyTorch judges the layout by its
        # suggested memory format), which gave CPU callers non-contiguous views of the
        # network's output, and graph replays reuse that memory.
        count, _, height, width = flow.shape
        nhwc = torch.empty((count, height, width, 2), dtype=torch.float32, device=flow.device)
        nhwc.copy_(flow.permute(0, 2, 3, 1))
        if geometry.resized:
            scale_x, scale_y = geometry.vector_scale
            nhwc[..., 0].mul_(scale_x)
            nhwc[..., 1].mul_(scale_y)
        if self._device.type != "cuda":
            array = nhwc.numpy()
            return lambda: array
        shape = tuple(nhwc.shape)
        pool_bytes = int(np.prod(shape)) * 4 * _MAX_FREE_DOWNLOAD_BUFFERS
        free = self._free_pinned.get_or_create(shape, list, weight=pool_bytes)
        pinned = free.pop() if free else torch.empty(shape, dtype=torch.float32, pin_memory=True)
        pinned.copy_(nhwc, non_blocking=True)
        # Blocking: the waiting thread sleeps instead of spinning a core for the
        # whole GPU time of a frame (on a Jetson, a core the node needs).
        copied = torch.cuda.Event(blocking=True)
        copied.record(torch.cuda.current_stream(self._device))

        def finish() -> np.ndarray:
            copied.synchronize()
            array = pinned.numpy().copy()
            # Back to the pool only now: until the copy has landed and been read,
            # another download must not reuse this buffer.
            spare = self._free_pinned.get_or_create(shape, list, weight=pool_bytes)
            if len(spare) < _MAX_FREE_DOWNLOAD_BUFFERS:
                spare.append(pinned)
            return array

        return finish


def _fit_to_grid(images: torch.Tensor, geometry: FrameGeometry) -> torch.Tensor:
    if geometry.resized:
        shrinking = (
            geometry.grid_width < geometry.input_width
            or geometry.grid_height < geometry.input_height
        )
        return functional.interpolate(
            images,
            size=(geometry.grid_height, geometry.grid_width),
            mode="bilinear",
            align_corners=False,
            antialias=shrinking,
        )
    if geometry.pad_right or geometry.pad_bottom:
        return functional.pad(
            images, (0, geometry.pad_right, 0, geometry.pad_bottom), mode="replicate"
        )
    return images
