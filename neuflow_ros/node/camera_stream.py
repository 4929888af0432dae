"""Per-camera frame history: which earlier frame the next flow starts from.

Flow is only meaningful between two consecutive frames of the same camera
that show the same scene geometry. A bag played in a loop, a camera that
changes resolution or encoding, or a long gap (dropped link, paused camera)
breaks that, and computing flow across the break produces confident nonsense.
So the stream restarts instead, and says why, so the node can log and count it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

PayloadT = TypeVar("PayloadT")


class ResetReason(enum.Enum):
    """Why a camera's history was discarded before a frame."""

    SIZE_CHANGED = "size_changed"
    ENCODING_CHANGED = "encoding_changed"
    TIME_BACKWARDS = "time_backwards"
    DUPLICATE_STAMP = "duplicate_stamp"
    GAP_TOO_LARGE = "gap_too_large"


@dataclass(frozen=True)
class StreamFrame(Generic[PayloadT]):
    """One received frame with what the reset rules need to know about it."""

    stamp_ns: int
    width: int
    height: int
    encoding: str
    payload: PayloadT


@dataclass(frozen=True)
class StreamStep(Generic[PayloadT]):
    """Result of advancing a stream by one frame.

    ``previous`` is the frame the flow must start from, or None when there is
    none (first frame, or the history was reset for ``reset_reason``).
    """

    previous: StreamFrame[PayloadT] | None
    reset_reason: ResetReason | None
    detail: str


class CameraStream(Generic[PayloadT]):
    """Remembers the last processed frame of one camera and applies the reset rules."""

    def __init__(self, max_frame_gap_s: float = 0.0) -> None:
        self.max_frame_gap_s = max_frame_gap_s
        self._last: StreamFrame[PayloadT] | None = None
        self.reset_counts: dict[ResetReason, int] = {reason: 0 for reason in ResetReason}

    @property
    def max_frame_gap_s(self) -> float:
        """Longest stamp gap still bridged by flow; 0 disables the check."""
        return self._max_frame_gap_s

    @max_frame_gap_s.setter
    def max_frame_gap_s(self, value: float) -> None:
        if value < 0.0:
            raise ValueError(f"max_frame_gap must not be negative, got {value}")
        self._max_frame_gap_s = value

    @property
    def last(self) -> StreamFrame[PayloadT] | None:
        return self._last

    def advance(self, frame: StreamFrame[PayloadT]) -> StreamStep[PayloadT]:
        """Make ``frame`` the newest one and say which frame the flow starts from."""
        previous = self._last
        self._last = frame
        if previous is None:
            return StreamStep(previous=None, reset_reason=None, detail="first frame")
        reason, detail = self._break_between(previous, frame)
        if reason is not None:
            self.reset_counts[reason] += 1
            return StreamStep(previous=None, reset_reason=reason, detail=detail)
        return StreamStep(previous=previous, reset_reason=None, detail="")

    def clear(self) -> None:
        """Forget the history, e.g. after the worker failed on this camera's frame."""
        self._last = None

    def _break_between(
        self, previous: StreamFrame[PayloadT], frame: StreamFrame[PayloadT]
    ) -> tuple[ResetReason | None, str]:
        if (previous.width, previous.height) != (frame.width, frame.height):
            return ResetReason.SIZE_CHANGED, (
                f"image size changed from {previous.width}x{previous.height} "
                f"to {frame.width}x{frame.height}"
            )
        if previous.encoding != frame.encoding:
            return ResetReason.ENCODING_CHANGED, (
                f"encoding changed from '{previous.encoding}' to '{frame.encoding}'"
            )
        gap_ns = frame.stamp_ns - previous.stamp_ns
        if gap_ns < 0:
            return ResetReason.TIME_BACKWARDS, (
                f"stamp jumped back by {-gap_ns / 1e9:.3f} s (bag loop or clock reset)"
            )
        if gap_ns == 0 and frame.stamp_ns != 0:
            # Zero time between two frames: no velocity exists, and a resent frame
            # paired with itself would report a standstill. Unset stamps (0) mark a
            # camera without a clock: its frames still pair, flow needs no time.
            seconds, nanoseconds = divmod(frame.stamp_ns, 1_000_000_000)
            return ResetReason.DUPLICATE_STAMP, (
                f"stamp {seconds}.{nanoseconds:09d} s repeated (a resent frame or a driver "
                "that does not advance its clock)"
            )
        if self._max_frame_gap_s > 0.0 and gap_ns > self._max_frame_gap_s * 1e9:
            return ResetReason.GAP_TOO_LARGE, (
                f"gap of {gap_ns / 1e9:.3f} s exceeds max_frame_gap "
                f"{self._max_frame_gap_s:.3f} s"
            )
        return None, ""
