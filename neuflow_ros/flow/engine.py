"""One flow engine for the ROS node, the offline tools and the benchmarks.

Callers hand over uint8 frames exactly as a camera delivers them and get
dense flow in input-image pixels back, whatever backend, device, precision
or inference resolution is configured. Keeping all of that behind one object
means the node, the tools and the benchmarks measure and ship the same code.

Thread-safety: an engine is meant for ONE worker thread. Its buffers and
solvers are reused from call to call without locking; give each thread its
own engine (they can share nothing but the GPU).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import cv2
import numpy as np

from neuflow_ros.flow.dis_backend import DIS_MIN_SIDE, DIS_PRESETS, DisBackend
from neuflow_ros.flow.flow_types import (
    COLOR_ORDERS,
    MIN_FRAME_SIDE,
    FlowResult,
    FrameError,
    FramePair,
    PendingFlow,
)
from neuflow_ros.flow.frame_geometry import (
    check_output_grid,
    plan_geometry,
    validate_inference_size,
)
from neuflow_ros.flow.warm_up_plan import WarmUpCall, warm_up_calls

__all__ = [
    "BACKENDS",
    "DEFAULT_DIS_PRESET",
    "NEUFLOW_WEIGHTS_HINT",
    "EngineConfig",
    "FlowEngine",
    "FlowResult",
    "FrameError",
    "FramePair",
    "PendingFlow",
    "config_to_run",
    "create_engine",
    "min_input_side",
]

BACKENDS = ("neuflow_v2", "neuflow_v1", "dis")
PRECISIONS = ("fp32", "fp16")
DEFAULT_DIS_PRESET = "fast"
"""Measured end to end through the engine at 640x480 on a 2-core CPU:
ultrafast 2.4 ms, fast 4.7 ms, medium 21.5 ms per pair; Middlebury mean
end-point error 0.88, 0.75, 0.60 px. 'fast' leaves a 30 Hz camera more than
3x headroom even with backward flow and the rest of the node running;
'medium' alone would take two thirds of the 33 ms frame budget."""

NEUFLOW_WEIGHTS_HINT = (
    "NeuFlow needs trained weights: download NeuFlow v2 'neuflow_mixed.pth' from the "
    "NeuFlow_v2 GitHub repository (neufieldrobotics/NeuFlow_v2) and pass its path as "
    "`checkpoint`"
)

_DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
_SHA256_PATTERN = re.compile(r"[0-9a-fA-F]{64}")

_log = logging.getLogger(__name__)
_WARM_UP_STREAM = object()
"""Part of the warm-up's stream names, so they never collide with a caller's."""


@dataclass(frozen=True)
class EngineConfig:
    """Everything that decides how flow is computed; validated on construction.

    ``inference_size`` is ``(width, height)``, multiples of 16: run at that
    fixed resolution. None runs at the native size, padded to a multiple of
    16 (edge replication) and cropped back. ``iters_s16``/``iters_s8`` apply
    to NeuFlow v2 only. ``streaming`` reuses a frame's backbone output for
    the next pair of the same ``FramePair.stream`` (same flow, half the
    backbone work); ``cuda_graphs`` replays the network from CUDA graphs on
    CUDA (ignored on the CPU). fp16 needs CUDA: with ``device='cpu'`` it is an
    error; with ``device='auto'`` on a machine without CUDA the engine falls
    back to fp32 and logs a warning, so one configuration serves both kinds
    of robot. ``num_threads`` sets the process-wide torch and OpenCV thread
    counts (None leaves them alone).
    """

    backend: str = "dis"
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    cache_dir: str | None = None
    device: str = "auto"
    precision: str = "fp32"
    inference_size: tuple[int, int] | None = None
    iters_s16: int = 1
    iters_s8: int = 8
    fold_batchnorm: bool = True
    streaming: bool = True
    cuda_graphs: bool = True
    dis_preset: str = DEFAULT_DIS_PRESET
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.checkpoint is not None and (
            not isinstance(self.checkpoint, str) or not self.checkpoint
        ):
            raise ValueError(
                f"checkpoint must be a non-empty string or None, got {self.checkpoint!r}"
            )
        if self.checkpoint_sha256 is not None and not (
            isinstance(self.checkpoint_sha256, str)
            and _SHA256_PATTERN.fullmatch(self.checkpoint_sha256)
        ):
            raise ValueError(
                f"checkpoint_sha256 must be 64 hex digits, got {self.checkpoint_sha256!r}"
            )
        if not isinstance(self.device, str) or not _DEVICE_PATTERN.fullmatch(self.device):
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("precision 'fp16' needs CUDA; use 'fp32' with device 'cpu'")
        if self.backend == "dis" and self.device.startswith("cuda"):
            raise ValueError("backend 'dis' runs on the CPU only; use device 'cpu' or 'auto'")
        if self.backend == "dis" and self.precision != "fp32":
            raise ValueError("backend 'dis' computes in fp32 only; use precision 'fp32'")
        if self.inference_size is not None:
            object.__setattr__(self, "inference_size", validate_inference_size(self.inference_size))
        for name in ("iters_s16", "iters_s8"):
            _check_positive_int(name, getattr(self, name))
        for name in ("fold_batchnorm", "streaming", "cuda_graphs"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.dis_preset not in DIS_PRESETS:
            raise ValueError(
                f"dis_preset must be one of {tuple(DIS_PRESETS)}, got {self.dis_preset!r}"
            )
        if self.num_threads is not None:
            _check_positive_int("num_threads", self.num_threads)


class _Backend(Protocol):
    def submit(
        self, pairs: Sequence[FramePair], backward: bool, output_grid: str
    ) -> PendingFlow: ...

    def gpu_memory_bytes(self) -> int | None: ...

    @property
    def encoded_frames(self) -> int | None: ...


class FlowEngine:
    """Dense optical flow for batches of camera frame pairs (see module docstring)."""

    def __init__(self, config: EngineConfig, logger: logging.Logger | None = None) -> None:
        self._config = config
        self._logger = logger or _log
        if config.num_threads is not None:
            cv2.setNumThreads(config.num_threads)
        self._captures_graphs = False
        """Whether warm-up must get every signature captured (NeuFlow, CUDA, graphs on)."""
        if config.backend == "dis":
            self._device = "cpu"
            self._precision = "fp32"
            self._backend: _Backend = DisBackend(config.dis_preset, config.inference_size)
        else:
            self._backend = self._create_neuflow_backend()

    @property
    def config(self) -> EngineConfig:
        return self._config

    @property
    def backend(self) -> str:
        return self._config.backend

    @property
    def device(self) -> str:
        """The device actually used ('cpu', 'cuda', 'cuda:1'), 'auto' resolved."""
        return self._device

    @property
    def precision(self) -> str:
        """The precision actually used, after a possible fp16 -> fp32 fallback."""
        return self._precision

    @property
    def submits_asynchronously(self) -> bool:
        """True when ``submit`` returns before the flow is computed (NeuFlow on CUDA).

        Only then does submitting the next batch before taking this one's flow
        overlap anything; on the CPU it would merely delay this one's results.
        """
        return self._device.startswith("cuda")

    def compute(
        self, pairs: Sequence[FramePair], backward: bool = False, output_grid: str = "input"
    ) -> list[FlowResult]:
        """Flow for each pair, in order; frames are never modified.

        ``backward=True`` also returns current -> previous flow (for NeuFlow
        in the same forward call). ``output_grid='input'`` returns flow at the
        input size; ``'inference'`` at the inference grid when a fixed
        inference size resamples the input (cheaper; vectors still in input
        pixels), otherwise at the input size as well.
        """
        return self.submit(pairs, backward, output_grid).result()

    def submit(
        self, pairs: Sequence[FramePair], backward: bool = False, output_grid: str = "input"
    ) -> PendingFlow:
        """``compute`` in two halves: queue the work now, wait in ``result()`` later.

        The frames are staged before this returns, so the caller may reuse
        their memory at once (streaming still needs them unmodified, see
        FramePair). Several submissions may be pending; each one's results
        are those ``compute`` would have returned at the time of its submit.
        """
        check_output_grid(output_grid)
        pairs = list(pairs)
        for position, pair in enumerate(pairs):
            if not isinstance(pair, FramePair):
                raise TypeError(f"pairs[{position}] must be a FramePair, got {type(pair).__name__}")
        if not pairs:
            return PendingFlow.completed([])
        return self._backend.submit(pairs, bool(backward), output_grid)

    def warm_up(
        self,
        height: int,
        width: int,
        color_order: str,
        batch: int = 1,
        backward: bool = False,
        output_grid: str = "input",
        backward_may_change: bool = False,
    ) -> None:
        """Run the expected workload at start-up so the first real frames are not slow.

        The first calls for a shape allocate buffers and, on CUDA, let cuDNN
        choose its algorithms and record the CUDA graphs, which takes far
        longer than a frame. ``batch`` is the number of cameras on this
        size's network grid (``batch_grid``). With CUDA graphs every signature
        they can submit is captured here (see warm_up_plan): 1..batch cameras
        ready at once, streams starting, continuing or partly restarting, and
        with ``backward_may_change`` the other backward setting too. Elsewhere
        one call starting ``batch`` streams allocates what there is to allocate.
        """
        if color_order not in COLOR_ORDERS:
            raise ValueError(f"color_order must be one of {COLOR_ORDERS}, got {color_order!r}")
        _check_positive_int("batch", batch)
        shape = (height, width) if color_order == "mono" else (height, width, 3)
        frames = (np.zeros(shape, dtype=np.uint8), np.full(shape, 128, dtype=np.uint8))
        if self._captures_graphs:
            from neuflow_ros.flow.cuda_graphs import EAGER_CALLS_BEFORE_CAPTURE

            settings = (backward, not backward) if backward_may_change else (backward,)
            plan = warm_up_calls(batch, settings, repeats=EAGER_CALLS_BEFORE_CAPTURE + 1)
        else:
            plan = [WarmUpCall(batch, backward, starting=batch)]
        newest: dict[int, np.ndarray] = {}  # camera -> the newest frame of its stream
        for call in plan:
            pairs = []
            for camera in range(call.cameras):
                kept = newest.get(camera)
                previous = kept
                if camera < call.starting or kept is None:
                    # A stream (re)starts where a pair begins with a frame it did not
                    # keep; one stream name per camera keeps the engine's memory of
                    # streams as small as the real cameras will.
                    previous = frames[1] if kept is frames[0] else frames[0]
                current = frames[1] if previous is frames[0] else frames[0]
                newest[camera] = current
                pairs.append(
                    FramePair(previous, current, color_order, stream=(_WARM_UP_STREAM, camera))
                )
            self.compute(pairs, backward=call.backward, output_grid=output_grid)

    def batch_grid(self, width: int, height: int) -> tuple[int, int]:
        """The network grid (width, height) frames of this size are computed on.

        Pairs on one grid share a network pass whatever their input size and
        colour order, so a caller preparing (``warm_up``) for several cameras
        counts them per grid.
        """
        geometry = plan_geometry(width, height, self._config.inference_size)
        return geometry.grid_width, geometry.grid_height

    def gpu_memory_bytes(self) -> int | None:
        """GPU memory PyTorch holds for this process, or None when running on the CPU."""
        return self._backend.gpu_memory_bytes()

    @property
    def encoded_frames(self) -> int | None:
        """Images the network's backbone has processed (None for DIS, which has none).

        Compared with the pairs computed it shows what streaming saves.
        """
        return self._backend.encoded_frames

    def _create_neuflow_backend(self) -> _Backend:
        config = self._config
        if config.checkpoint is None:
            raise ValueError(
                f"backend {config.backend!r} needs a checkpoint. {NEUFLOW_WEIGHTS_HINT}, or use "
                "backend 'dis' (or create_engine(..., allow_dis_fallback=True))"
            )
        # torch is imported only here so that DIS-only users (CPU robots)
        # do not pay for loading it.
        import torch

        from neuflow_ros.flow.checkpoint import load_model
        from neuflow_ros.flow.neuflow_backend import NeuFlowBackend
        from neuflow_ros.models import fold_batchnorm

        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {config.device!r} requested but CUDA is not available")
        precision = config.precision
        if precision == "fp16" and device == "cpu":
            self._logger.warning(
                "precision 'fp16' needs CUDA, which is not available: running in fp32 on the CPU"
            )
            precision = "fp32"
        self._device = device
        self._precision = precision

        version, model = load_model(
            config.checkpoint,
            cache_dir=config.cache_dir,
            sha256=config.checkpoint_sha256,
            expected_version=config.backend,
        )
        if config.fold_batchnorm:
            model = fold_batchnorm(model)
        dtype = torch.float16 if precision == "fp16" else torch.float32
        torch_device = torch.device(device)
        if torch_device.type == "cuda" and torch_device.index is None:
            # Pinned now: 'cuda' means the constructing thread's device, and other
            # threads (the node's worker) may have another current device.
            torch_device = torch.device("cuda", torch.cuda.current_device())
        model = model.to(device=torch_device, dtype=dtype).eval()
        if torch_device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            self._captures_graphs = config.cuda_graphs
        return NeuFlowBackend(
            version,
            model,
            torch_device,
            dtype,
            config.inference_size,
            config.iters_s16,
            config.iters_s8,
            streaming=config.streaming,
            cuda_graphs=config.cuda_graphs,
            logger=self._logger,
        )


def create_engine(
    config: EngineConfig,
    allow_dis_fallback: bool = True,
    logger: logging.Logger | None = None,
) -> FlowEngine:
    """Build an engine, falling back to DIS when a NeuFlow backend has no checkpoint.

    The fallback exists so a robot without weights still gets flow; it says
    so loudly (a warning on ``logger``) and tells how to get the weights. A
    checkpoint that is given but fails to load is always an error
    (``CheckpointError``): silently running a different method would hide it.
    """
    logger = logger or _log
    to_run = config_to_run(config, allow_dis_fallback)
    if to_run.backend != config.backend:
        logger.warning(
            "backend %r has no checkpoint, using OpenCV DIS (preset %r) instead. %s.",
            config.backend,
            config.dis_preset,
            NEUFLOW_WEIGHTS_HINT,
        )
    return FlowEngine(to_run, logger)


def config_to_run(config: EngineConfig, allow_dis_fallback: bool = True) -> EngineConfig:
    """The configuration create_engine runs: ``config``, or its DIS fallback."""
    if config.backend == "dis" or config.checkpoint is not None or not allow_dis_fallback:
        return config
    return replace(
        config,
        backend="dis",
        checkpoint_sha256=None,
        device="cpu" if config.device.startswith("cuda") else config.device,
        precision="fp32",
    )


def min_input_side(config: EngineConfig) -> int:
    """Smallest width and height an engine with ``config`` computes flow for.

    DIS works on the input itself unless a fixed inference size resamples it;
    the networks pad any input up to their grid, so only the common floor applies.
    """
    if config.backend == "dis" and config.inference_size is None:
        return max(MIN_FRAME_SIDE, DIS_MIN_SIDE[config.dis_preset])
    return MIN_FRAME_SIDE


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
