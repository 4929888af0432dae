"""Ending the node process while the worker thread is still inside an engine call.

A NeuFlow compute on the CPU can take seconds and cannot be interrupted. If
the interpreter shuts down around it, the call returns into a finalizing
interpreter: the thread is unwound from inside torch's C++ frames, or the
libraries' static thread pools are destroyed while still in use, and the
process dies with SIGABRT ("terminate called without an active exception"),
which a launch system reports as a crash and which leaves core dumps behind.
The node therefore stops everything it can (publishing, subscriptions, the
ROS context, which also finalizes ROS logging) and then ends the process
with ``os._exit``, which runs no interpreter or C++ teardown at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
from typing import NoReturn


def exit_without_teardown(code: int) -> NoReturn:
    """Flush every log stream, then end the process at once with ``code``."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken: nothing to flush
            stream.flush()
    ctypes.CDLL(None).fflush(None)  # C stdio buffers (rcutils console output may be buffered)
    os._exit(code)
