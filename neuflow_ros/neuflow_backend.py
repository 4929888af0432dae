"""NeuFlow v1/v2 inference on batches of frame pairs.

A GPU is far from busy with one robot-resolution pair, so everything that
can share a network pass does: all pairs that end up on the same grid (same
input size, or any size when a fixed inference size is set) and, for
backward flow, the swapped pairs stacked into the same batch. Each frame is
encoded once, however many pairs it appears in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from neuflow_ros.bounded_cache import BoundedCache
from neuflow_ros.device_transfer import FlowDownloader, FrameUploader
from neuflow_ros.flow_types import FlowResult, FramePair
from neuflow_ros.frame_geometry import FrameGeometry, plan_geometry
from neuflow_ros.models import EncodedImages, FlowNetwork


@dataclass
class _PairGroup:
    """Pairs with the same input size and colour order: they share a staging buffer."""

    indices: list[int]
    pairs: list[FramePair]
    geometry: FrameGeometry
    flow: torch.Tensor | None = None
    """Network output for the group's pairs, set by the batch's forward call."""


class NeuFlowBackend:
    """Runs a loaded NeuFlow model; the model must already be on ``device`` in ``dtype``."""

    def __init__(
        self,
        version: str,
        model: FlowNetwork,
        device: torch.device,
        dtype: torch.dtype,
        inference_size: tuple[int, int] | None,
        iters_s16: int,
        iters_s8: int,
    ) -> None:
        self._model = model
        self._device = device
        self._dtype = dtype
        self._inference_size = inference_size
        # Only v2 has configurable refinement iterations.
        self._forward_options = (
            {"iters_s16": iters_s16, "iters_s8": iters_s8} if version == "neuflow_v2" else {}
        )
        self._uploader = FrameUploader(device)
        self._indices: BoundedCache[tuple[torch.Tensor, torch.Tensor]] = BoundedCache(16)
        self._downloader = FlowDownloader(device)

    def compute(
        self, pairs: Sequence[FramePair], backward: bool, output_grid: str
    ) -> list[FlowResult]:
        results: dict[int, FlowResult] = {}
        with torch.inference_mode():
            for batch in self._group_by_grid(self._group_by_input(pairs)).values():
                self._run_batch(batch, backward)
                for group in batch:
                    self._collect(group, backward, output_grid, results)
        return [results[index] for index in range(len(pairs))]

    def gpu_memory_bytes(self) -> int | None:
        """Bytes PyTorch holds on the GPU (reserved, not just in use): what others cannot use."""
        if self._device.type != "cuda":
            return None
        return torch.cuda.memory_reserved(self._device)

    def _group_by_input(self, pairs: Sequence[FramePair]) -> list[_PairGroup]:
        groups: dict[tuple, _PairGroup] = {}
        for index, pair in enumerate(pairs):
            key = (pair.size, pair.color_order)
            if key not in groups:
                width, height = pair.size
                geometry = plan_geometry(width, height, self._inference_size)
                groups[key] = _PairGroup([], [], geometry)
            groups[key].indices.append(index)
            groups[key].pairs.append(pair)
        return list(groups.values())

    @staticmethod
    def _group_by_grid(groups: list[_PairGroup]) -> dict[tuple[int, int], list[_PairGroup]]:
        batches: dict[tuple[int, int], list[_PairGroup]] = {}
        for group in groups:
            grid = (group.geometry.grid_width, group.geometry.grid_height)
            batches.setdefault(grid, []).append(group)
        return batches

    def _run_batch(self, batch: list[_PairGroup], backward: bool) -> None:
        """One network pass for every group on the same grid; flow is left on the groups.

        Every frame is encoded once; the pairwise part then runs on one batch
        holding, per group, its forward pairs and (backward) the same pairs
        swapped, so each group's outputs are one contiguous slice. Encoding
        once instead of per pair saves the backbone on half the images when
        backward flow is asked for.
        """
        images = []
        for group in batch:
            previous = [pair.previous for pair in group.pairs]
            frames = previous + [pair.current for pair in group.pairs]
            images.append(
                self._uploader.upload(
                    frames, group.pairs[0].color_order, group.geometry, self._dtype
                )
            )
        encoded = self._model.encode(images[0] if len(images) == 1 else torch.cat(images))
        first, second = self._pair_indices([len(group.pairs) for group in batch], backward)
        flow = self._model.decode(
            _select(encoded, first), _select(encoded, second), **self._forward_options
        )
        start = 0
        for group in batch:
            stop = start + len(group.pairs) * (2 if backward else 1)
            group.flow = flow[start:stop]
            start = stop

    def _pair_indices(
        self, group_sizes: list[int], backward: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Which encoded frames form each pair of the batch (frame 0, frame 1).

        Encoded frames are laid out per group as [previous..., current...].
        Cached, because a camera setup produces the same layout every frame.
        """

        def build() -> tuple[torch.Tensor, torch.Tensor]:
            first: list[int] = []
            second: list[int] = []
            offset = 0
            for count in group_sizes:
                previous = list(range(offset, offset + count))
                current = list(range(offset + count, offset + 2 * count))
                first += previous + (current if backward else [])
                second += current + (previous if backward else [])
                offset += 2 * count
            return (
                torch.tensor(first, device=self._device),
                torch.tensor(second, device=self._device),
            )

        return self._indices.get_or_create((tuple(group_sizes), backward), build)

    def _collect(
        self,
        group: _PairGroup,
        backward: bool,
        output_grid: str,
        results: dict[int, FlowResult],
    ) -> None:
        flows = self._downloader.download(group.flow, group.geometry, output_grid)
        count = len(group.pairs)
        for offset, (index, pair) in enumerate(zip(group.indices, group.pairs, strict=True)):
            results[index] = FlowResult(
                forward=flows[offset],
                backward=flows[count + offset] if backward else None,
                input_size=pair.size,
            )


def _select(encoded: EncodedImages, indices: torch.Tensor) -> EncodedImages:
    """The encodings of the given frames, in the given order."""
    return EncodedImages(
        **{
            field.name: getattr(encoded, field.name).index_select(0, indices)
            for field in fields(encoded)
        }
    )
