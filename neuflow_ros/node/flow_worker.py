"""The thread that owns the flow engine, without ROS.

Creating an engine (loading weights, moving them to the GPU) and computing
flow take far longer than a subscription callback may. So one worker thread
creates the engine, takes the newest frames of all cameras from the mailbox,
pairs each with its camera's previous frame, computes every ready pair in one
batched engine call and hands the results to a sink (the node's publishers).
An exception while computing or publishing is reported and the worker goes
on with the next frames; only a failure to create the engine stops it.

Stopping never waits for an engine call: a CPU compute may take seconds and
cannot be interrupted. Once ``stop`` returns, the worker publishes nothing
more (the batch in hand is abandoned), so the node may destroy its
publishers and shut the ROS context down while the call is still running.

On a GPU, when frames are already waiting while a batch computes (the
engine cannot keep up, or a keep-all queue is draining), the worker submits
the next batch before it waits for the current one: the next frames' upload
and launches, and this batch's tracking and publishing, then overlap the
network's work. With nothing waiting a batch is finished at once, so the
overlap never adds latency; on the CPU, where submitting computes, batches
never overlap.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..flow.flow_types import FlowResult, FramePair, PendingFlow
from .camera_stream import CameraStream, ResetReason, StreamFrame
from .frame_mailbox import FrameMailbox
from .stereo_pairing import StereoPairConfig, StereoPairing
from .worker_thread import WorkerThread


@dataclass(frozen=True)
class CameraFrame:
    """A decoded camera frame as the worker needs it."""

    camera: str
    stamp_ns: int
    frame_id: str
    encoding: str
    pixels: np.ndarray
    color_order: str
    handed_over_s: float
    """time.monotonic() when the callback put it into the mailbox."""

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


@dataclass(frozen=True)
class StereoFlow:
    """Flow from a left frame to the right frame of the same instant, and back.

    ``result.forward`` is left -> right, ``result.backward`` right -> left.
    """

    left: CameraFrame
    right: CameraFrame
    result: FlowResult


def stereo_frame_pairs(
    left: np.ndarray, right: np.ndarray, color_order: str, backward: bool
) -> list[FramePair]:
    """The pairs that give a stereo pair's left->right and right->left flow in a batch.

    The engine takes one backward flag per call: when the batch computes
    backward flow anyway, left->right alone carries both; otherwise the
    reverse goes in as a pair of its own, so the temporal pairs are not
    computed backward for the stereo check's sake. Neither adds a backbone
    pass: both images are in the batch already.
    """
    pairs = [FramePair(left, right, color_order)]
    if not backward:
        pairs.append(FramePair(right, left, color_order))
    return pairs


def stereo_result(results: Sequence[FlowResult]) -> FlowResult:
    """One FlowResult (forward left->right, backward right->left) from stereo_frame_pairs'."""
    if len(results) == 1:
        return results[0]
    forward, reverse = results
    return FlowResult(forward.forward, reverse.forward, forward.input_size)


@dataclass(frozen=True)
class CameraFlow:
    """Flow between two frames of one camera: what every output publisher consumes.

    Publishers of further outputs (e.g. feature tracks) subscribe to the same
    results, so they see exactly the frame pairs the flow was computed for.
    """

    camera: str
    previous: CameraFrame
    current: CameraFrame
    result: FlowResult
    output_grid: str
    stereo: StereoFlow | None = None
    """For the left camera of a stereo pair: the left->right flow at ``current``'s stamp."""


@dataclass(frozen=True)
class WorkerSettings:
    """Settings the node may replace at run time; read once per batch."""

    max_frame_gap_s: float = 1.0
    output_grid: str = "input"
    backward: bool = False
    stereo: StereoPairConfig | None = None
    """Cameras whose frames of one instant also get a left->right flow (with backward)."""


class WorkerObserver(Protocol):
    """What the worker reports; the node logs it and feeds the diagnostics."""

    def engine_ready(self, engine: Any) -> None: ...

    def engine_failed(self, error: BaseException) -> None: ...

    def frame_taken(self, frame: CameraFrame, queue_wait_s: float) -> None: ...

    def stream_reset(self, camera: str, reason: ResetReason, detail: str) -> None: ...

    def inference_done(self, pairs: int, seconds: float) -> None: ...

    def worker_exception(self, stage: str, error: BaseException, trace: str) -> None: ...

    def stereo_paired(self, left: CameraFrame, right: CameraFrame) -> None: ...

    def stereo_unpaired(self, frame: CameraFrame) -> None: ...

    def stereo_skipped(self, reason: str, detail: str) -> None: ...


FlowSink = Callable[[Sequence[CameraFlow]], None]


@dataclass(frozen=True)
class EngineCall:
    """What the worker is waiting for the engine to do, and since when."""

    kind: str
    """'compute' (a batch's submit or result) or 'warm-up' (a new frame size's first,
    much slower, calls: allocation, cuDNN autotuning, CUDA graph capture)."""
    started_s: float
    """time.monotonic() at the start of the call."""


@dataclass(frozen=True)
class _SubmittedBatch:
    """A batch handed to the engine whose flow the worker has not taken yet."""

    pairs: list[tuple[CameraFrame, CameraFrame]]
    stereo: tuple[CameraFrame, CameraFrame] | None
    """(left, right) whose flow follows the temporal pairs' in the results."""
    settings: WorkerSettings
    """As read when the batch was submitted, so its results are published as asked then."""
    pending: PendingFlow
    started: float


class FlowWorker:
    """Runs ``engine_factory`` and the compute loop on a worker thread.

    ``thread`` may be shared by the workers of successive activations (see
    worker_thread); without one the worker gets a thread of its own.
    """

    def __init__(
        self,
        engine_factory: Callable[[], Any],
        mailbox: FrameMailbox[CameraFrame],
        sink: FlowSink,
        observer: WorkerObserver,
        settings: WorkerSettings | None = None,
        poll_interval_s: float = 0.1,
        thread: WorkerThread | None = None,
    ) -> None:
        self._engine_factory = engine_factory
        self._mailbox = mailbox
        self._sink = sink
        self._observer = observer
        self.settings = settings or WorkerSettings()
        self._poll_interval_s = poll_interval_s
        self._streams: dict[Hashable, CameraStream[CameraFrame]] = {}
        self._cameras_per_grid: dict[tuple[int, int], set[str]] = {}
        """Per network grid, the cameras the engine was prepared for."""
        self._layouts_warmed_up: set[tuple[int, int, str]] = set()
        """Frame sizes and colour orders the engine was prepared for."""
        self._pairing: StereoPairing[CameraFrame] | None = None
        self._stop = threading.Event()
        self._publishing = threading.Lock()
        """Held while the sink publishes; ``stop`` takes it, so no publishing outlives stop."""
        self._ready = threading.Event()
        self._own_thread = thread is None
        self._thread = thread or WorkerThread()
        self._started = False
        self._finished = threading.Event()
        self.engine: Any = None
        self.startup_error: BaseException | None = None
        self.engine_call: EngineCall | None = None
        """The engine call now running; None between calls.

        A call that never returns (a hung GPU, a driver reset) shows here, while
        the thread itself stays alive and reports nothing.
        """

    def start(self) -> None:
        self._started = True
        self._thread.run(self._run)
        if self._own_thread:
            self._thread.close()

    def stop(self, timeout_s: float) -> bool:
        """End the loop, waiting up to timeout_s; True when it ended, False while still in a call.

        Either way nothing is published after this returns (unless publishing
        one batch outlasts timeout_s): a batch being published is finished
        first, any later one is dropped.
        """
        deadline = time.monotonic() + timeout_s
        self._mailbox.close()
        publishing_done = self._publishing.acquire(timeout=timeout_s)
        self._stop.set()
        if publishing_done:
            self._publishing.release()
        if not self._started:
            return True
        return self._finished.wait(max(0.0, deadline - time.monotonic()))

    @property
    def failed(self) -> bool:
        return self.startup_error is not None

    @property
    def alive(self) -> bool:
        """True from start until the loop has ended (also while it waits for its thread)."""
        return self._started and not self._finished.is_set()

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the engine exists (tests and benchmarks wait for this)."""
        return self._ready.wait(timeout_s)

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._finished.set()

    def _loop(self) -> None:
        if self._stop.is_set():
            return  # stopped while an earlier activation's loop still held the thread
        try:
            self.engine = self._engine_factory()
        except Exception as error:
            self.startup_error = error
            self._observer.engine_failed(error)
            return
        self._ready.set()
        self._observer.engine_ready(self.engine)
        overlap = bool(self.engine.submits_asynchronously)
        in_flight: _SubmittedBatch | None = None
        while not self._stop.is_set():
            # With a batch in flight only frames already waiting are taken.
            frames = self._mailbox.take(
                timeout=0.0 if in_flight is not None else self._poll_interval_s
            )
            ready, stereo = self._pair_stereo(list(frames.values()))
            submitted = self._submit(ready, stereo) if ready else None
            if in_flight is not None:
                self._finish(in_flight)
            in_flight = submitted
            if in_flight is not None and not overlap:
                self._finish(in_flight)
                in_flight = None
        if in_flight is not None:
            self._finish(in_flight)

    def _pair_stereo(
        self, frames: list[CameraFrame]
    ) -> tuple[list[CameraFrame], tuple[CameraFrame, CameraFrame] | None]:
        """Hold stereo frames back until their partner came; the frames ready and the pair."""
        config = self.settings.stereo
        if config is None:
            return frames, None
        if self._pairing is None or self._pairing.config != config:
            self._pairing = StereoPairing(config)
        step = self._pairing.admit(frames, time.monotonic())
        for frame in step.unpaired:
            self._observer.stereo_unpaired(frame)
        pair = step.pair
        if pair is not None:
            left, right = pair
            self._observer.stereo_paired(left, right)
            if left.pixels.shape != right.pixels.shape or left.color_order != right.color_order:
                self._observer.stereo_skipped(
                    "size_mismatch",
                    f"left frame is {left.width}x{left.height} {left.encoding}, right is "
                    f"{right.width}x{right.height} {right.encoding}",
                )
                pair = None
        return step.frames, pair

    def _submit(
        self, frames: list[CameraFrame], stereo: tuple[CameraFrame, CameraFrame] | None
    ) -> _SubmittedBatch | None:
        settings = self.settings
        taken_s = time.monotonic()
        pairs: list[tuple[CameraFrame, CameraFrame]] = []
        for frame in frames:
            self._observer.frame_taken(frame, taken_s - frame.handed_over_s)
            previous = self._advance_stream(frame, settings.max_frame_gap_s)
            if previous is not None:
                pairs.append((previous, frame))
        if stereo is not None and not any(current is stereo[0] for _, current in pairs):
            stereo = None  # the left frame starts its stream: no tracks to match yet
        if not pairs:
            return None
        frame_pairs = [FramePair(p.pixels, c.pixels, c.color_order, stream=c.camera)
                       for p, c in pairs]
        if stereo is not None:
            left, right = stereo
            frame_pairs += stereo_frame_pairs(
                left.pixels, right.pixels, left.color_order, settings.backward
            )
        started = time.perf_counter()
        try:
            with self._engine_call("compute"):
                pending = self.engine.submit(
                    frame_pairs,
                    backward=settings.backward,
                    output_grid=settings.output_grid,
                )
        except Exception as error:
            self._observer.worker_exception("compute", error, traceback.format_exc())
            return None
        return _SubmittedBatch(pairs, stereo, settings, pending, started)

    def _finish(self, batch: _SubmittedBatch) -> None:
        try:
            with self._engine_call("compute"):
                results = batch.pending.result()
            self._observer.inference_done(len(batch.pairs), time.perf_counter() - batch.started)
        except Exception as error:
            self._observer.worker_exception("compute", error, traceback.format_exc())
            return
        output_grid = batch.settings.output_grid
        stereo = None
        if batch.stereo is not None:
            stereo = StereoFlow(*batch.stereo, stereo_result(results[len(batch.pairs):]))
            results = results[:len(batch.pairs)]
        flows = [
            CameraFlow(
                current.camera, previous, current, result, output_grid,
                stereo if stereo is not None and current is stereo.left else None,
            )
            for (previous, current), result in zip(batch.pairs, results, strict=True)
        ]
        with self._publishing:
            if self._stop.is_set():
                return  # stopping: the node may be tearing its publishers down
            try:
                self._sink(flows)
            except Exception as error:
                self._observer.worker_exception("publish", error, traceback.format_exc())

    def _advance_stream(self, frame: CameraFrame, max_frame_gap_s: float) -> CameraFrame | None:
        stream = self._streams.get(frame.camera)
        if stream is None:
            stream = self._streams[frame.camera] = CameraStream(max_frame_gap_s)
        stream.max_frame_gap_s = max_frame_gap_s
        step = stream.advance(
            StreamFrame(frame.stamp_ns, frame.width, frame.height, frame.encoding, frame)
        )
        if step.reset_reason is not None:
            self._observer.stream_reset(frame.camera, step.reset_reason, step.detail)
        if step.previous is None:
            self._warm_up_for(frame)
            return None
        return step.previous.payload

    def _warm_up_for(self, frame: CameraFrame) -> None:
        """Prepare the engine for a new camera or frame size while that frame has no partner.

        Cameras on one network grid share a pass and may be ready together in
        any number, and backward flow may be switched at run time: the engine
        prepares all of that, so nothing is first met (on CUDA: captured)
        while frames wait.
        """
        layout = (frame.width, frame.height, frame.color_order)
        cameras = self._cameras_per_grid.setdefault(
            self.engine.batch_grid(frame.width, frame.height), set()
        )
        if frame.camera in cameras and layout in self._layouts_warmed_up:
            return
        cameras.add(frame.camera)
        self._layouts_warmed_up.add(layout)
        settings = self.settings
        stereo = settings.stereo
        # A stereo pair's batch carries its left->right flow too (and right->left).
        pairs = len(cameras)
        if stereo is not None and {stereo.left, stereo.right} <= cameras:
            pairs += 1 if settings.backward else 2
        try:
            with self._engine_call("warm-up"):
                self.engine.warm_up(
                    frame.height, frame.width, frame.color_order, batch=pairs,
                    backward=settings.backward,
                    output_grid=settings.output_grid,
                    backward_may_change=True,
                )
        except Exception as error:
            self._observer.worker_exception("warm-up", error, traceback.format_exc())

    @contextmanager
    def _engine_call(self, kind: str) -> Iterator[None]:
        self.engine_call = EngineCall(kind, time.monotonic())
        try:
            yield
        finally:
            self.engine_call = None
