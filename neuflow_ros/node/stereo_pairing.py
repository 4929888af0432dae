"""Pairs the left and right frames of a stereo camera by stamp, on the worker thread.

The two sides of a stereo camera arrive as two topics, so the worker may
take the left frame in one batch and its right partner in the next. A
stereo frame therefore waits for its partner (at most until the next frame
of either side shows it is not coming, or ``partner_timeout_s``), so that
both sides and their left->right flow go into one engine batch.
Frames whose partner never came go on alone and are counted as unpaired:
a match to a frame of another instant would be wrong, not approximate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar


class StampedFrame(Protocol):
    @property
    def camera(self) -> str: ...

    @property
    def stamp_ns(self) -> int: ...


FrameT = TypeVar("FrameT", bound=StampedFrame)


@dataclass(frozen=True)
class StereoPairConfig:
    left: str
    right: str
    max_stamp_difference_ns: int = 0
    partner_timeout_s: float = 0.25
    """Longest wait for a partner when no later frame arrives (a stopped camera): far
    above the few milliseconds between two drivers' frames, a few frames at 30 Hz."""


@dataclass
class PairingStep(Generic[FrameT]):
    """What one call of StereoPairing.admit releases."""

    frames: list[FrameT] = field(default_factory=list)
    """Frames ready for their temporal flow, in arrival order of their batch."""
    pair: tuple[FrameT, FrameT] | None = None
    """(left, right) of the same instant, both also in ``frames``; at most one per call."""
    unpaired: list[FrameT] = field(default_factory=list)
    """Stereo frames released without a partner (also in ``frames``)."""


class StereoPairing(Generic[FrameT]):
    """Holds back one frame per stereo side until its partner arrives."""

    def __init__(self, config: StereoPairConfig) -> None:
        self.config = config
        self._waiting: dict[str, FrameT] = {}
        self._waiting_since_s: dict[str, float] = {}

    def admit(self, frames: list[FrameT], now_s: float) -> PairingStep[FrameT]:
        """Take a batch of newest frames (at most one per camera); release what is ready.

        ``now_s`` (time.monotonic()) releases frames that waited longer than
        ``partner_timeout_s``: their partner is not coming (a stopped camera).
        """
        step: PairingStep[FrameT] = PairingStep()
        sides = (self.config.left, self.config.right)
        for frame in frames:
            if frame.camera not in sides:
                step.frames.append(frame)
                continue
            superseded = self._waiting.pop(frame.camera, None)
            if superseded is not None:
                self._release_unpaired(step, superseded)
            self._waiting[frame.camera] = frame
            self._waiting_since_s[frame.camera] = now_s
        left = self._waiting.get(self.config.left)
        right = self._waiting.get(self.config.right)
        if left is not None and right is not None:
            if abs(left.stamp_ns - right.stamp_ns) <= self.config.max_stamp_difference_ns:
                del self._waiting[self.config.left], self._waiting[self.config.right]
                step.frames.extend((left, right))
                step.pair = (left, right)
            else:
                older = left if left.stamp_ns < right.stamp_ns else right
                del self._waiting[older.camera]
                self._release_unpaired(step, older)
        for camera in sides:
            if camera in self._waiting and (
                now_s - self._waiting_since_s[camera] > self.config.partner_timeout_s
            ):
                self._release_unpaired(step, self._waiting.pop(camera))
        return step

    @staticmethod
    def _release_unpaired(step: PairingStep[FrameT], frame: FrameT) -> None:
        step.frames.append(frame)
        step.unpaired.append(frame)
