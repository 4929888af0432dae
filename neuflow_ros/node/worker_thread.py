"""One long-lived OS thread for the flow worker, reused across activations.

Why not a fresh thread per activation: glibc gives a thread that allocates a
malloc arena of its own (up to 8 per core), and the engine's buffers are
allocated on the computing thread; a lifecycle node that started a new worker
thread at every activation kept growing (415 to 513 MB over 30 cycles with
NeuFlow v1). Running every activation's loop on the same thread keeps those
allocations in one arena.

Running the loops one after another on one thread also means two loops can
never use the (single-threaded) engine at once: a loop that is still inside a
long engine call when the node is deactivated simply delays the next
activation's loop until the call returns.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable

Job = Callable[[], None]


class WorkerThread:
    """Runs submitted jobs in order on one daemon thread, started at the first job.

    A daemon, so that a job stuck in a native call (a long CPU compute, a hung
    GPU) never keeps the process alive; the node then ends the process without
    interpreter teardown (see process_exit).
    """

    def __init__(self, name: str = "neuflow-worker") -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._lock = threading.Lock()
        self._started = False
        self._unfinished = 0
        self._idle = threading.Condition(self._lock)

    def run(self, job: Job) -> None:
        """Queue ``job``; it runs after every job queued before it."""
        with self._lock:
            self._unfinished += 1
            if not self._started:
                self._started = True
                self._thread.start()
        self._jobs.put(job)

    def wait_idle(self, timeout_s: float) -> bool:
        """True once no job is running or queued; False if one still is after timeout_s."""
        with self._idle:
            return self._idle.wait_for(lambda: self._unfinished == 0, timeout_s)

    def close(self) -> None:
        """Let the thread end after the jobs already queued."""
        self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:
                # A job must not take the thread (and every later activation) down with it.
                sys.excepthook(*sys.exc_info())
            finally:
                with self._idle:
                    self._unfinished -= 1
                    self._idle.notify_all()
