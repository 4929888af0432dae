"""Waiting for a condition another thread or process makes true, without rclpy."""

from __future__ import annotations

import time
from collections.abc import Callable


def poll_until(
    condition: Callable[[], object], timeout_s: float = 10.0, interval_s: float = 0.01
) -> bool:
    """True as soon as ``condition()`` is truthy; False if it still is not after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
    return True
