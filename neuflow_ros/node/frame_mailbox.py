"""Hand-over of camera frames from subscription callbacks to the flow worker.

The callbacks must never wait for inference: a camera that publishes faster
than the engine computes would otherwise stall the executor and make DDS drop
frames where nobody can count them. The mailbox decouples both sides and makes
every frame that is not processed visible as a counted drop.

Two policies:

* latest-frame-wins (``keep_all=False``, the default): each camera holds at
  most one waiting frame; a newer frame replaces it and the replaced one is
  counted as dropped. Latency stays at one frame whatever the load.
* keep-all (``keep_all=True``): frames of a camera queue up in arrival order
  up to ``max_queued`` per camera. A full queue makes ``put`` wait up to
  ``block_timeout`` seconds for the worker (back-pressure on the callback);
  if the worker still has not caught up, the oldest queued frame is dropped
  and counted, so memory stays bounded even when the worker hangs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

FrameT = TypeVar("FrameT")


@dataclass(frozen=True)
class PutOutcome:
    """What happened to the mailbox when a frame was handed over."""

    dropped: int
    """Frames that left the mailbox unprocessed because of this hand-over."""

    waited_s: float
    """Time the caller was held back by a full keep-all queue."""


class MailboxClosedError(RuntimeError):
    """Raised by ``put`` after ``close``: the worker is gone, nobody will read."""


class FrameMailbox(Generic[FrameT]):
    """Thread-safe per-camera frame slots or queues; see the module docstring."""

    def __init__(
        self,
        keep_all: bool = False,
        max_queued: int = 30,
        block_timeout: float = 0.5,
    ) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be at least 1, got {max_queued}")
        if block_timeout < 0.0:
            raise ValueError(f"block_timeout must not be negative, got {block_timeout}")
        self._keep_all = keep_all
        self._max_queued = max_queued
        self._block_timeout = block_timeout
        self._queues: dict[Hashable, deque[FrameT]] = {}
        self._closed = False
        self._lock = threading.Lock()
        self._frame_available = threading.Condition(self._lock)
        self._space_available = threading.Condition(self._lock)

    @property
    def keep_all(self) -> bool:
        return self._keep_all

    def set_keep_all(self, keep_all: bool) -> dict[Hashable, int]:
        """Switch policy at run time; returns the frames each camera lost by the switch.

        Switching to latest-frame-wins keeps only the newest waiting frame of
        each camera, so the older ones are dropped (and reported).
        """
        with self._lock:
            self._keep_all = keep_all
            dropped: dict[Hashable, int] = {}
            if not keep_all:
                for camera, queue in self._queues.items():
                    if len(queue) > 1:
                        dropped[camera] = len(queue) - 1
                        while len(queue) > 1:
                            queue.popleft()
            self._space_available.notify_all()
            return dropped

    def put(self, camera: Hashable, frame: FrameT) -> PutOutcome:
        """Hand over one frame of ``camera``; never blocks longer than block_timeout."""
        with self._lock:
            if self._closed:
                raise MailboxClosedError("frame mailbox is closed")
            queue = self._queues.setdefault(camera, deque())
            dropped = 0
            waited_s = 0.0
            if not self._keep_all:
                dropped = len(queue)
                queue.clear()
            elif len(queue) >= self._max_queued:
                started = time.monotonic()
                deadline = started + self._block_timeout
                while len(queue) >= self._max_queued and self._keep_all and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0.0:
                        break
                    self._space_available.wait(remaining)
                waited_s = time.monotonic() - started
                if self._closed:
                    raise MailboxClosedError("frame mailbox is closed")
                limit = self._max_queued if self._keep_all else 1
                while len(queue) >= limit:
                    queue.popleft()
                    dropped += 1
            queue.append(frame)
            self._frame_available.notify()
            return PutOutcome(dropped=dropped, waited_s=waited_s)

    def take(self, timeout: float | None = None) -> dict[Hashable, FrameT]:
        """Oldest waiting frame of every camera that has one.

        Taking one frame per camera at a time lets the worker batch cameras
        together while keeping each camera's frames in order. Waits up to
        ``timeout`` seconds for a frame (None: until one arrives or the mailbox
        closes); returns an empty dict on time-out or when closed.
        """
        with self._lock:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._closed and not any(self._queues.values()):
                if deadline is None:
                    self._frame_available.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0.0:
                    break
                self._frame_available.wait(remaining)
            if self._closed:
                return {}
            taken = {camera: queue.popleft() for camera, queue in self._queues.items() if queue}
            if taken:
                self._space_available.notify_all()
            return taken

    def pending(self) -> int:
        """Frames waiting for the worker, over all cameras."""
        with self._lock:
            return sum(len(queue) for queue in self._queues.values())

    def close(self) -> int:
        """Wake every waiter and refuse further frames; returns frames left unprocessed."""
        with self._lock:
            self._closed = True
            left = sum(len(queue) for queue in self._queues.values())
            self._queues.clear()
            self._frame_available.notify_all()
            self._space_available.notify_all()
            return left
