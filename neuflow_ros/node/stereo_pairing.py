"""Pairs the left and right frames of a stereo camera by stamp, on the worker thread.

The two sides of a stereo camera arrive as two topics, so the worker may
take the left frame in one batch and its right partner in the next. A
stereo frame therefore waits (at most until the next frame of the same
side, or until nothing arrived for a poll interval) for its partner, so
that both sides and their left->right flow go into one engine batch.
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

    def admit(self, frames: list[FrameT], idle: bool = False) -> PairingStep[FrameT]:
        """Take a batch of newest frames (at most one per camera); release what is ready.

        ``idle``: nothing arrived for a whole poll interval, so a waiting frame's
        partner is not coming (a dropped frame, a stopped camera): release it.
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
        if idle:
            for camera in sides:
                waiting = self._waiting.pop(camera, None)
                if waiting is not None:
                    self._release_unpaired(step, waiting)
        return step

    @staticmethod
    def _release_unpaired(step: PairingStep[FrameT], frame: FrameT) -> None:
        step.frames.append(frame)
        step.unpaired.append(frame)
