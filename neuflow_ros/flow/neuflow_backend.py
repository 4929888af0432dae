"""NeuFlow v1/v2 inference on batches of frame pairs.

A GPU is far from busy with one robot-resolution pair, so everything that
can share a network pass does: all pairs that end up on the same grid (same
input size, or any size when a fixed inference size is set) and, for
backward flow, the swapped pairs stacked into the same batch. Each frame is
encoded once, however many pairs it appears in, and in streaming mode once
per stream: the frame that ends one pair starts the next (stream_encodings).
On CUDA both network halves are replayed from CUDA graphs (cuda_graphs), and
submit only queues work: the host waits for the GPU in PendingFlow.result().
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from neuflow_ros.flow.bounded_cache import BoundedCache
from neuflow_ros.flow.cuda_graphs import EngineGraphs, GraphedFunction
from neuflow_ros.flow.device_transfer import FlowDownloader, FrameUploader
from neuflow_ros.flow.flow_types import FlowResult, FramePair, PendingFlow
from neuflow_ros.flow.frame_geometry import FrameGeometry, plan_geometry
from neuflow_ros.flow.stream_encodings import StreamEncodings
from neuflow_ros.models import EncodedImages, FlowNetwork

_Slot = tuple[str, int]
"""Where a pair's frame is encoded: ('new', i) in this call's batch, or ('kept', i)
among the encodings kept from earlier calls."""


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
        streaming: bool = True,
        cuda_graphs: bool = True,
        logger: logging.Logger | None = None,
    ) -> None:
        self._model = model
        self._device = device
        self._dtype = dtype
        self._inference_size = inference_size
        self._forward_options = forward_options(version, iters_s16, iters_s8)
        self._streams = StreamEncodings() if streaming else None
        # Not a bound method: the backend must not be part of a reference cycle,
        # or a dropped engine keeps its GPU memory until the cyclic GC runs.
        decode = functools.partial(decode_pairs, model, self._forward_options)
        self._encode: Callable[[torch.Tensor], EncodedImages] = model.encode
        self._decode_selected: Callable[..., torch.Tensor] = decode
        self._compute_stream: torch.cuda.Stream | None = None
        if device.type == "cuda":
            # A stream of its own, so engines in other threads neither serialize
            # with this one on the legacy default stream nor wait for its work.
            self._compute_stream = torch.cuda.Stream(device)
            # The weights were copied on the default stream.
            self._compute_stream.wait_stream(torch.cuda.current_stream(device))
            if cuda_graphs:
                graphs = EngineGraphs(device, logger)
                self._encode = GraphedFunction(model.encode, "encode", graphs, model.grids.tensors)
                self._decode_selected = GraphedFunction(
                    decode, "decode", graphs, model.grids.tensors
                )
        self.encoded_frames = 0
        """Images through the backbone so far: with streaming about one per pair."""
        self._uploader = FrameUploader(device)
        self._indices: BoundedCache[tuple[torch.Tensor, torch.Tensor]] = BoundedCache(16)
        self._downloader = FlowDownloader(device)

    def submit(self, pairs: Sequence[FramePair], backward: bool, output_grid: str) -> PendingFlow:
        """Queues every pass and download; on CUDA nothing here waits for the GPU."""
        downloads: list[tuple[_PairGroup, Callable[[], np.ndarray]]] = []
        with self._on_device(), torch.inference_mode():
            for batch in self._group_by_grid(self._group_by_input(pairs)).values():
                self._run_batch(batch, backward)
                for group in batch:
                    assert group.flow is not None
                    downloads.append(
                        (group, self._downloader.download(group.flow, group.geometry, output_grid))
                    )
                    group.flow = None

        def finish() -> list[FlowResult]:
            results: dict[int, FlowResult] = {}
            for group, download in downloads:
                _collect(group, download(), backward, results)
            return [results[index] for index in range(len(pairs))]

        return PendingFlow(finish)

    @contextlib.contextmanager
    def _on_device(self) -> Iterator[None]:
        """This engine's device and compute stream, set in whichever thread submits."""
        if self._compute_stream is None:
            yield
            return
        with torch.cuda.device(self._device), torch.cuda.stream(self._compute_stream):
            yield

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

        Every frame is encoded at most once: a stream's first frame comes from
        the previous call when streaming, the rest are encoded together. The
        pairwise part then runs on one batch holding, per group, its forward
        pairs and (backward) the same pairs swapped, so each group's outputs
        are one contiguous slice.
        """
        uploads: list[torch.Tensor] = []
        reused: list[EncodedImages] = []
        slots: list[tuple[list[_Slot], list[_Slot]]] = []
        uploaded_count = 0
        for group in batch:
            signature = self._signature(group)
            to_upload = []
            previous_slots: list[_Slot] = []
            for pair in group.pairs:
                kept = (
                    self._streams.lookup(pair.stream, pair.previous, signature)
                    if self._streams is not None
                    else None
                )
                if kept is None:
                    previous_slots.append(("new", uploaded_count + len(to_upload)))
                    to_upload.append(pair.previous)
                else:
                    previous_slots.append(("kept", len(reused)))
                    reused.append(kept)
            current_slots: list[_Slot] = [
                ("new", uploaded_count + len(to_upload) + offset)
                for offset in range(len(group.pairs))
            ]
            to_upload += [pair.current for pair in group.pairs]
            uploads.append(
                self._uploader.upload(
                    to_upload, group.pairs[0].color_order, group.geometry, self._dtype
                )
            )
            uploaded_count += len(to_upload)
            slots.append((previous_slots, current_slots))
        encoded = self._encode(uploads[0] if len(uploads) == 1 else torch.cat(uploads))
        self.encoded_frames += uploaded_count
        # Everything read from the encoding happens before the decode call: graphs
        # share one memory pool, so the decode replay may overwrite encode outputs.
        if self._streams is not None:
            for group, (_, current_slots) in zip(batch, slots, strict=True):
                signature = self._signature(group)
                for pair, (_, index) in zip(group.pairs, current_slots, strict=True):
                    if pair.stream is not None:
                        self._streams.remember(
                            pair.stream, pair.current, signature, _copy_item(encoded, index)
                        )
        if reused:
            encoded = _concatenate([encoded, *reused])
        first, second = self._pair_indices(slots, uploaded_count, backward)
        flow = self._decode_selected(
            encoded.features_s16, encoded.features_s8, encoded.upsample_context, first, second
        )
        start = 0
        for group in batch:
            stop = start + len(group.pairs) * (2 if backward else 1)
            group.flow = flow[start:stop]
            start = stop

    def _signature(self, group: _PairGroup) -> tuple:
        """What an encoding depends on besides the pixels."""
        return (group.pairs[0].size, group.pairs[0].color_order, group.geometry, self._dtype)

    def _pair_indices(
        self,
        slots: list[tuple[list[_Slot], list[_Slot]]],
        uploaded_count: int,
        backward: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Which encoded frames form each pair of the batch (frame 0, frame 1).

        Encoded frames are laid out as [newly encoded..., kept from earlier
        calls...]. Cached, because a camera setup produces the same layout
        every frame.
        """

        def position(slot: _Slot) -> int:
            kind, index = slot
            return index if kind == "new" else uploaded_count + index

        first: list[int] = []
        second: list[int] = []
        for previous_slots, current_slots in slots:
            group_first, group_second = pair_order(
                [position(slot) for slot in previous_slots],
                [position(slot) for slot in current_slots],
                backward,
            )
            first += group_first
            second += group_second

        def build() -> tuple[torch.Tensor, torch.Tensor]:
            return _to_device(first, self._device), _to_device(second, self._device)

        return self._indices.get_or_create((tuple(first), tuple(second)), build)


def forward_options(version: str, iters_s16: int, iters_s8: int) -> dict[str, int]:
    """The decode's keyword options: only v2 has configurable refinement iterations."""
    return {"iters_s16": iters_s16, "iters_s8": iters_s8} if version == "neuflow_v2" else {}


def pair_order(
    previous: list[int], current: list[int], backward: bool
) -> tuple[list[int], list[int]]:
    """(frame 0s, frame 1s) of a group's pairs: forward pairs, then (backward) the same
    pairs swapped, so the group's forward and backward flows are one slice each."""
    if not backward:
        return previous, current
    return previous + current, current + previous


def decode_pairs(
    model: FlowNetwork,
    forward_options: dict[str, int],
    features_s16: torch.Tensor,
    features_s8: torch.Tensor,
    upsample_context: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
) -> torch.Tensor:
    """Flow for the frame pairs (first[i], second[i]) of one batch of encodings.

    Tensors only in and out, so that the whole pairwise part, gathering
    included, can be one CUDA graph.
    """
    encoded = EncodedImages(features_s16, features_s8, upsample_context)
    return model.decode(_select(encoded, first), _select(encoded, second), **forward_options)


def _collect(
    group: _PairGroup, flows: np.ndarray, backward: bool, results: dict[int, FlowResult]
) -> None:
    """Splits a group's downloaded flow (forward pairs, then backward) into its pairs' results."""
    count = len(group.pairs)
    for offset, (index, pair) in enumerate(zip(group.indices, group.pairs, strict=True)):
        results[index] = FlowResult(
            forward=flows[offset],
            backward=flows[count + offset] if backward else None,
            input_size=pair.size,
        )


def _to_device(indices: list[int], device: torch.device) -> torch.Tensor:
    """An index tensor on ``device`` without blocking the host: a copy from pinned
    memory is queued on the stream, one from pageable memory would wait for it."""
    host = torch.tensor(indices, dtype=torch.long)
    if device.type == "cuda":
        host = host.pin_memory()
    return host.to(device, non_blocking=True)


def _concatenate(parts: list[EncodedImages]) -> EncodedImages:
    return EncodedImages(
        **{
            field.name: torch.cat([getattr(part, field.name) for part in parts])
            for field in fields(EncodedImages)
        }
    )


def _copy_item(encoded: EncodedImages, index: int) -> EncodedImages:
    """One frame's encoding in memory of its own: graph outputs and batch tensors are
    overwritten or freed by the next call, a kept encoding must outlive them."""
    return EncodedImages(
        **{
            field.name: getattr(encoded, field.name)[index : index + 1].clone()
            for field in fields(encoded)
        }
    )


def _select(encoded: EncodedImages, indices: torch.Tensor) -> EncodedImages:
    """The encodings of the given frames, in the given order."""
    return EncodedImages(
        **{
            field.name: getattr(encoded, field.name).index_select(0, indices)
            for field in fields(encoded)
        }
    )
