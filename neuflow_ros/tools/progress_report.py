"""Progress of a long offline run on stderr, for a terminal and for a log file.

A terminal gets one line rewritten in place a few times a second; a
redirected stream (CI log, nohup) gets a full line every ``interval_s``
seconds instead, so logs stay readable and small.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

_TTY_REFRESH_S = 0.2


def _format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressReport:
    """Reports frames done out of a total (None when unknown), the rate and the ETA.

    Also the one writer of other messages during a run (see message()).
    """

    def __init__(self, stream: TextIO, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._clock = clock
        self._interactive = bool(getattr(stream, "isatty", lambda: False)())
        self._interval_s = _TTY_REFRESH_S if self._interactive else interval_s
        self._line_open = False
        self.start(None)

    def start(self, total: int | None) -> None:
        """Start timing the run now; ``total`` frames expected (None: unknown)."""
        self._total = total
        self._started = self._clock()
        self._last_report = self._started

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._started

    def update(self, done: int) -> None:
        now = self._clock()
        if now - self._last_report < self._interval_s:
            return
        self._last_report = now
        line = self.describe(done, now - self._started)
        if self._interactive:
            self._stream.write(f"\r\x1b[K{line}")
            self._line_open = True
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def describe(self, done: int, elapsed_s: float) -> str:
        rate = done / elapsed_s if elapsed_s > 0 else 0.0
        if self._total:
            percent = 100.0 * done / self._total
            remaining = (self._total - done) / rate if rate > 0 else float("nan")
            eta = _format_duration(remaining) if remaining == remaining else "?"
            return (f"{done}/{self._total} frames ({percent:.0f}%), {rate:.1f} frames/s, "
                    f"ETA {eta}")
        return f"{done} frames, {rate:.1f} frames/s, elapsed {_format_duration(elapsed_s)}"

    def message(self, text: str) -> None:
        """Print a line of its own without garbling the in-place progress line."""
        if self._line_open:
            self._stream.write("\r\x1b[K")
            self._line_open = False
        self._stream.write(text + "\n")
        self._stream.flush()

    def finish(self) -> None:
        """End the in-place line so the summary starts on a fresh one."""
        if self._line_open:
            self._stream.write("\n")
            self._stream.flush()
            self._line_open = False
