"""The values that go into and come out of a flow engine.

They live apart from the engine so the backends can use them without
importing the engine (which imports the backends).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

COLOR_ORDERS = ("mono", "rgb", "bgr")

MIN_FRAME_SIDE = 8
"""Below this, neither DIS nor the networks have any structure to match."""


class FrameError(ValueError):
    """A camera frame the engine cannot use; the message names the offending property."""


@dataclass(frozen=True)
class FramePair:
    """Two consecutive frames of one camera, validated on construction.

    Frames are uint8 arrays as a camera driver delivers them: ``HxW`` or
    ``HxWx1`` for ``'mono'``, ``HxWx3`` for ``'rgb'``/``'bgr'``. Views with
    padded rows or a dropped alpha channel are fine; they are never written to.

    ``stream`` names the camera stream the pair belongs to (any hashable, e.g.
    the camera name). With it, an engine in streaming mode keeps what it
    computed from ``current`` alone and reuses it when the stream's next pair
    starts with that same array object, so each frame goes through the
    backbone once. Frames of a stream must therefore not be modified after
    they are handed over; a new array (a reset, a re-decoded frame) is simply
    computed afresh.
    """

    previous: np.ndarray
    current: np.ndarray
    color_order: str
    stream: Hashable | None = None

    def __post_init__(self) -> None:
        if self.color_order not in COLOR_ORDERS:
            raise FrameError(f"color_order must be one of {COLOR_ORDERS}, got {self.color_order!r}")
        for name in ("previous", "current"):
            _check_frame(name, getattr(self, name), self.color_order)
        if self.previous.shape[:2] != self.current.shape[:2]:
            raise FrameError(
                f"previous and current frames differ in size: {self.previous.shape} vs "
                f"{self.current.shape}"
            )

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of both frames."""
        return self.previous.shape[1], self.previous.shape[0]

    @property
    def channels(self) -> int:
        return 1 if self.color_order == "mono" else 3


def _check_frame(name: str, frame: object, color_order: str) -> None:
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"{name} frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise FrameError(f"{name} frame must be uint8, got {frame.dtype}")
    if color_order == "mono":
        valid = frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1)
        expected = "HxW or HxWx1"
    else:
        valid = frame.ndim == 3 and frame.shape[2] == 3
        expected = "HxWx3"
    if not valid:
        raise FrameError(
            f"{name} frame with color_order {color_order!r} must be {expected}, "
            f"got shape {frame.shape}"
        )
    if min(frame.shape[:2]) < MIN_FRAME_SIDE:
        raise FrameError(
            f"{name} frame is {frame.shape[1]}x{frame.shape[0]}; both sides must be at "
            f"least {MIN_FRAME_SIDE} pixels"
        )


@dataclass
class FlowResult:
    """Dense flow for one frame pair, vectors always in input-image pixels.

    ``forward`` maps previous -> current, ``backward`` current -> previous
    (None unless requested); both are float32 ``[h, w, 2]`` with (u, v) =
    (horizontal, vertical). ``h, w`` is the input size or, for
    ``output_grid='inference'``, the inference grid (see frame_geometry for
    how its pixels sit on the input).
    """

    forward: np.ndarray
    backward: np.ndarray | None
    input_size: tuple[int, int]


class PendingFlow:
    """Flow an engine was asked for and may still be computing.

    On a GPU, ``FlowEngine.submit`` only queues the work. A caller with more
    frames waiting converts and submits them before calling ``result()`` here,
    so their upload and kernel launches, and its own work on these results
    (tracking, publishing), overlap the GPU computing. On the CPU the flow is
    computed at submit and ``result()`` only hands it over.
    """

    def __init__(self, finish: Callable[[], list[FlowResult]]) -> None:
        self._finish: Callable[[], list[FlowResult]] | None = finish
        self._results: list[FlowResult] | None = None
        self._error: BaseException | None = None

    @classmethod
    def completed(cls, results: list[FlowResult]) -> PendingFlow:
        """A pending flow that is already computed (CPU backends)."""
        return cls(lambda: results)

    def result(self) -> list[FlowResult]:
        """Waits for the flow; one FlowResult per submitted pair, in order.

        Calling it again returns the same results, or raises the same error:
        the waiting and the buffers behind it are released by the first call.
        """
        if self._finish is not None:
            finish, self._finish = self._finish, None
            try:
                self._results = finish()
            except BaseException as error:
                self._error = error
                raise
        if self._error is not None:
            raise self._error
        assert self._results is not None
        return self._results
