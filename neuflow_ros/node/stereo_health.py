"""Counters of the stereo pair for /diagnostics, fed from the worker thread.

A stereo front end fails quietly: tracks keep flowing while the right
observations thin out or stop (a stamp offset between the drivers, a
CameraInfo without a baseline). So the pair has its own status with what
was paired, what was not and why matches were refused.
"""

from __future__ import annotations

import threading
from collections import Counter

from .diagnostics import OK, WARN, EventWindow, StatusReport


class StereoHealth:
    """Thread-safe stereo counters; ``report`` gives one StatusReport."""

    def __init__(self, name: str, left: str, right: str, window_s: float = 5.0) -> None:
        self.name = name
        self._left = left
        self._right = right
        self._lock = threading.Lock()
        self._paired = 0
        self._unpaired: Counter[str] = Counter({left: 0, right: 0})
        self._matched_frames = 0
        self._matches = 0
        self._rejections: Counter[str] = Counter()
        self._disabled: Counter[str] = Counter()
        self._last_disabled = ""
        self._recent_disabled = EventWindow(window_s)
        self._recent_unpaired = EventWindow(window_s)
        self._matches_per_frame = EventWindow(window_s)

    def paired(self) -> None:
        with self._lock:
            self._paired += 1

    def unpaired(self, camera: str, now_s: float) -> None:
        with self._lock:
            self._unpaired[camera] += 1
            self._recent_unpaired.add(now_s)

    def disabled(self, reason: str, detail: str, now_s: float) -> None:
        """A frame pair whose matching was switched off by bad input."""
        with self._lock:
            self._disabled[reason] += 1
            self._last_disabled = f"{reason}: {detail}"
            self._recent_disabled.add(now_s)

    def matched(self, matches: int, rejections: dict[str, int], now_s: float) -> None:
        with self._lock:
            self._matched_frames += 1
            self._matches += matches
            self._rejections.update(rejections)
            self._matches_per_frame.add(now_s, float(matches))

    def report(self, now_s: float) -> StatusReport:
        with self._lock:
            values = [
                ("left camera", self._left),
                ("right camera", self._right),
                ("stereo pairs", str(self._paired)),
                (f"unpaired frames: {self._left}", str(self._unpaired[self._left])),
                (f"unpaired frames: {self._right}", str(self._unpaired[self._right])),
                ("frames matched", str(self._matched_frames)),
                ("matches", str(self._matches)),
                ("matches per frame p50", f"{self._matches_per_frame.percentile(now_s, 0.5):.1f}"),
            ]
            values += [(f"rejected: {reason}", str(count))
                        for reason, count in sorted(self._rejections.items())]
            values += [(f"disabled: {reason}", str(count))
                        for reason, count in sorted(self._disabled.items())]
            if self._recent_disabled.count(now_s):
                level, message = WARN, f"stereo matching off: {self._last_disabled}"
            elif self._recent_unpaired.count(now_s):
                level, message = WARN, "stereo frames without a partner of the same stamp"
            elif self._matched_frames == 0:
                level, message = OK, "no stereo pair matched yet"
            else:
                level, message = OK, "matching"
            return StatusReport(self.name, level, message, values)
