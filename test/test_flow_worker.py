"""FlowWorker with a recording fake engine: pairing, batching, resets, failures; and, with
the real engine on the CPU, that its warm-up meets every signature the worker submits."""

import threading
import time

import numpy as np
import pytest
from neuflow_weights import write_official_checkpoint
from polling import poll_until

from neuflow_ros.flow.engine import EngineConfig, FlowEngine
from neuflow_ros.flow.flow_types import FlowResult, PendingFlow
from neuflow_ros.node.camera_stream import ResetReason
from neuflow_ros.node.flow_worker import CameraFrame, FlowWorker, WorkerSettings
from neuflow_ros.node.frame_mailbox import FrameMailbox
from neuflow_ros.node.stereo_pairing import StereoPairConfig
from neuflow_ros.node.worker_thread import WorkerThread

SECOND = 1_000_000_000


class FakeEngine:
    """Returns flow whose u is the stamp difference (ms) of the pair, so pairing is visible.

    ``log`` records submissions and result hand-overs in order, to show when the
    worker overlaps batches; ``hold_results`` makes results wait for that event,
    like a GPU that does not answer. ``fail_on_call`` makes that submission raise, at
    submit or (``fail_at='result'``) when its result is taken, like a GPU error.
    """

    def __init__(self, fail_on_call: int | None = None, fail_at: str = "submit",
                 submits_asynchronously: bool = True, hold_results: threading.Event | None = None):
        self.submits_asynchronously = submits_asynchronously
        self.hold_results = hold_results
        self.calls = []
        self.pairs = []
        self.warm_ups = []
        self.log = []
        self.fail_on_call = fail_on_call
        self.fail_at = fail_at

    def submit(self, pairs, backward=False, output_grid="input"):
        self.calls.append((len(pairs), output_grid))
        self.pairs.extend(pairs)
        call = len(self.calls)
        self.log.append(("submit", call))
        if self.fail_on_call == call and self.fail_at == "submit":
            raise RuntimeError("simulated CUDA error")

        def finish():
            self.log.append(("result", call))
            if self.hold_results is not None:
                self.hold_results.wait(5.0)
            if self.fail_on_call == call:
                raise RuntimeError("simulated CUDA error")
            return [self._result(pair) for pair in pairs]

        return PendingFlow(finish)

    @staticmethod
    def _result(pair):
        height, width = pair.current.shape[:2]
        flow = np.zeros((height, width, 2), np.float32)
        flow[..., 0] = float(pair.current[0, 0, 0]) - float(pair.previous[0, 0, 0])
        return FlowResult(forward=flow, backward=None, input_size=(width, height))

    @staticmethod
    def batch_grid(width, height):
        """Sizes up to 16 px apart share a grid, as padding to multiples of 16 does."""
        return -(-width // 16) * 16, -(-height // 16) * 16

    def warm_up(self, height, width, color_order, batch=1, backward=False, output_grid="input",
                backward_may_change=False):
        self.warm_ups.append(
            (width, height, color_order, batch, backward, output_grid, backward_may_change)
        )


class Recorder:
    def __init__(self):
        self.events = []
        self.flows = []
        self.ready = threading.Event()
        self.lock = threading.Lock()

    def sink(self, flows):
        with self.lock:
            self.flows.extend(flows)

    def engine_ready(self, engine):
        self.events.append(("ready", engine))
        self.ready.set()

    def engine_failed(self, error):
        self.events.append(("failed", error))
        self.ready.set()

    def frame_taken(self, frame, queue_wait_s):
        self.events.append(("taken", frame.camera, queue_wait_s))

    def stream_reset(self, camera, reason, detail):
        self.events.append(("reset", camera, reason))

    def inference_done(self, pairs, seconds):
        self.events.append(("inference", pairs))

    def worker_exception(self, stage, error, trace):
        self.events.append(("exception", stage, str(error), trace))

    def stereo_paired(self, left, right):
        self.events.append(("stereo paired", left.stamp_ns))

    def stereo_unpaired(self, frame):
        self.events.append(("stereo unpaired", frame.camera, frame.stamp_ns))

    def stereo_skipped(self, reason, detail):
        self.events.append(("stereo skipped", reason))


def frame(camera: str, stamp_s: float, marker: int, width: int = 32, height: int = 24):
    pixels = np.full((height, width, 3), marker, np.uint8)
    return CameraFrame(camera, int(stamp_s * SECOND), f"{camera}_frame", "rgb8", pixels, "rgb",
                       time.monotonic())


def run_worker(engine, batches, settings=None, settings_per_batch=None):
    """Feed the worker batch by batch (each batch = frames put together) and stop it.

    ``settings_per_batch`` replaces the worker's settings before each batch, as
    the node does when a parameter changes.
    """
    recorder = Recorder()
    mailbox = FrameMailbox(keep_all=True)
    worker = FlowWorker(lambda: engine, mailbox, recorder.sink, recorder, settings,
                        poll_interval_s=0.01)
    worker.start()
    assert recorder.ready.wait(5.0)
    for index, batch in enumerate(batches):
        if settings_per_batch is not None:
            worker.settings = settings_per_batch[index]
        for item in batch:
            mailbox.put(item.camera, item)
        poll_until(lambda: not mailbox.pending(), 5.0, 0.005)
        time.sleep(0.02)
    assert worker.stop(2.0)
    return recorder


def wait_for(condition) -> None:
    assert poll_until(condition, 5.0, 0.005)


def test_frames_of_one_camera_pair_in_order():
    engine = FakeEngine()
    recorder = run_worker(engine, [[frame("", 1.0, 10)], [frame("", 1.1, 13)],
                                   [frame("", 1.2, 20)]])
    assert [f.previous.stamp_ns for f in recorder.flows] == [1 * SECOND, int(1.1 * SECOND)]
    assert [float(f.result.forward[0, 0, 0]) for f in recorder.flows] == [3.0, 7.0]
    assert recorder.flows[0].current.frame_id == "_frame"
    assert engine.warm_ups == [(32, 24, "rgb", 1, False, "input", True)]


def test_cameras_ready_together_are_computed_in_one_call():
    engine = FakeEngine()
    recorder = run_worker(engine, [
        [frame("front", 1.0, 1), frame("down", 1.0, 50)],
        [frame("front", 1.1, 2), frame("down", 1.1, 53)],
    ])
    assert engine.calls == [(2, "input")]
    by_camera = {f.camera: float(f.result.forward[0, 0, 0]) for f in recorder.flows}
    assert by_camera == {"front": 1.0, "down": 3.0}


def test_pairs_chain_frame_objects_per_camera_for_streaming():
    """The engine reuses a frame's encoding only for the same array of the same stream."""
    engine = FakeEngine()
    run_worker(engine, [
        [frame("front", 1.0, 1), frame("down", 1.0, 50)],
        [frame("front", 1.1, 2), frame("down", 1.1, 53)],
        [frame("front", 1.2, 3), frame("down", 1.2, 56)],
    ])
    by_camera = {}
    for pair in engine.pairs:
        by_camera.setdefault(pair.stream, []).append(pair)
    assert set(by_camera) == {"front", "down"}
    for first, second in by_camera.values():
        assert second.previous is first.current


def run_backlog(engine, frames: int = 5):
    """Frames queued before the worker starts: a backlog from the first batch on."""
    recorder = Recorder()
    mailbox = FrameMailbox(keep_all=True)
    for index in range(frames):
        mailbox.put("", frame("", 1.0 + index / 10, 10 + index * index))
    worker = FlowWorker(lambda: engine, mailbox, recorder.sink, recorder, poll_interval_s=0.01)
    worker.start()
    wait_for(lambda: len(recorder.flows) == frames - 1)
    assert worker.stop(2.0)
    return recorder


def test_waiting_frames_are_submitted_before_the_batch_in_flight_is_finished():
    """Under backlog on a GPU the next upload overlaps the current compute; results in order."""
    engine = FakeEngine()
    recorder = run_backlog(engine)
    assert engine.log == [("submit", 1), ("submit", 2), ("result", 1), ("submit", 3),
                          ("result", 2), ("submit", 4), ("result", 3), ("result", 4)]
    assert [float(f.result.forward[0, 0, 0]) for f in recorder.flows] == [1.0, 3.0, 5.0, 7.0]


def test_an_engine_that_computes_at_submit_never_overlaps_batches():
    """On the CPU submitting ahead would only delay every result by one batch."""
    engine = FakeEngine(submits_asynchronously=False)
    recorder = run_backlog(engine)
    assert engine.log == [("submit", 1), ("result", 1), ("submit", 2), ("result", 2),
                          ("submit", 3), ("result", 3), ("submit", 4), ("result", 4)]
    assert len(recorder.flows) == 4


def test_without_waiting_frames_each_batch_is_finished_before_the_next_submit():
    """No backlog, no overlap: a batch's flow is published without waiting for a frame."""
    engine = FakeEngine()
    recorder = run_worker(engine, [[frame("", 1.0, 1)], [frame("", 1.1, 2)],
                                   [frame("", 1.2, 4)]])
    assert engine.log == [("submit", 1), ("result", 1), ("submit", 2), ("result", 2)]
    assert len(recorder.flows) == 2


def start_stuck_in_a_call(engine, factory=None, thread=None):
    """A worker whose engine (holding its results) is inside the first pair's compute call."""
    recorder = Recorder()
    mailbox = FrameMailbox()
    worker = FlowWorker(factory or (lambda: engine), mailbox, recorder.sink, recorder,
                        poll_interval_s=0.01, thread=thread)
    worker.start()
    assert recorder.ready.wait(5.0)
    for stamp_s in (1.0, 1.1):
        mailbox.put("", frame("", stamp_s, int(stamp_s * 10)))
        wait_for(lambda: mailbox.pending() == 0)
    wait_for(lambda: ("result", 1) in engine.log)
    return worker, recorder


def test_an_engine_call_that_does_not_return_shows_how_long_it_has_run():
    engine = FakeEngine(hold_results=threading.Event())
    worker, recorder = start_stuck_in_a_call(engine)
    call = worker.engine_call
    assert call is not None and call.kind == "compute" and call.started_s <= time.monotonic()
    time.sleep(0.05)
    assert worker.engine_call == call  # still the same call, growing older
    engine.hold_results.set()
    wait_for(lambda: len(recorder.flows) == 1)
    wait_for(lambda: worker.engine_call is None)
    assert worker.stop(2.0)


def test_reset_is_reported_and_no_flow_crosses_it():
    engine = FakeEngine()
    recorder = run_worker(engine, [
        [frame("", 5.0, 1)], [frame("", 4.0, 2)], [frame("", 4.1, 4)],
    ])
    assert ("reset", "", ResetReason.TIME_BACKWARDS) in recorder.events
    assert len(recorder.flows) == 1
    assert recorder.flows[0].previous.stamp_ns == 4 * SECOND


def test_settings_are_read_per_batch():
    engine = FakeEngine()
    settings = WorkerSettings(max_frame_gap_s=0.5, output_grid="inference")
    recorder = run_worker(engine, [[frame("", 1.0, 1)], [frame("", 2.0, 2)],
                                   [frame("", 2.1, 3)]], settings)
    assert ("reset", "", ResetReason.GAP_TOO_LARGE) in recorder.events
    assert engine.calls == [(1, "inference")]
    assert recorder.flows[0].output_grid == "inference"


@pytest.mark.parametrize("fail_at", ["submit", "result"])
def test_compute_exception_is_reported_and_the_worker_goes_on(fail_at):
    engine = FakeEngine(fail_on_call=1, fail_at=fail_at)
    recorder = run_worker(engine, [[frame("", 1.0, 1)], [frame("", 1.1, 2)],
                                   [frame("", 1.2, 4)]])
    exceptions = [e for e in recorder.events if e[0] == "exception"]
    assert len(exceptions) == 1
    assert exceptions[0][1] == "compute"
    assert "simulated CUDA error" in exceptions[0][2]
    assert "Traceback" in exceptions[0][3]
    assert len(recorder.flows) == 1
    assert float(recorder.flows[0].result.forward[0, 0, 0]) == 2.0


def test_sink_exception_is_reported_and_the_worker_goes_on():
    engine = FakeEngine()
    recorder = Recorder()
    calls = []

    def failing_sink(flows):
        calls.append(len(flows))
        if len(calls) == 1:
            raise ValueError("publisher gone")

    mailbox = FrameMailbox(keep_all=True)
    worker = FlowWorker(lambda: engine, mailbox, failing_sink, recorder, poll_interval_s=0.01)
    worker.start()
    for stamp_s in (1.0, 1.1, 1.2):
        mailbox.put("", frame("", stamp_s, int(stamp_s * 10)))
        time.sleep(0.05)
    assert worker.stop(2.0)
    assert calls == [1, 1]
    assert [e[1] for e in recorder.events if e[0] == "exception"] == ["publish"]


def test_engine_creation_failure_stops_the_worker_with_the_error():
    recorder = Recorder()

    def broken_factory():
        raise FileNotFoundError("checkpoint file not found: /nope.pth")

    worker = FlowWorker(broken_factory, FrameMailbox(), recorder.sink, recorder)
    worker.start()
    assert recorder.ready.wait(5.0)
    assert worker.stop(2.0)
    assert worker.failed
    assert "/nope.pth" in str(worker.startup_error)
    assert recorder.events[0][0] == "failed"


@pytest.mark.timeout(10)
def test_stop_returns_promptly_when_idle():
    recorder = Recorder()
    worker = FlowWorker(FakeEngine, FrameMailbox(), recorder.sink, recorder, poll_interval_s=5.0)
    worker.start()
    assert recorder.ready.wait(5.0)
    started = time.monotonic()
    assert worker.stop(2.0)
    assert time.monotonic() - started < 0.5


def test_warm_up_prepares_the_workload_the_settings_ask_for():
    """Graphs and buffers are per layout: warming up forward-only would miss the tracker's pass."""
    engine = FakeEngine()
    run_worker(engine, [[frame("", 1.0, 1)]],
               WorkerSettings(backward=True, output_grid="inference"))
    assert engine.warm_ups == [(32, 24, "rgb", 1, True, "inference", True)]


def test_warm_up_prepares_every_camera_count_of_a_grid_once():
    """Cameras on one network grid may be ready together: the engine must know how many
    there are, or a two-camera batch is first met (on CUDA: captured) while frames wait."""
    engine = FakeEngine()
    run_worker(engine, [
        [frame("a", 1.0, 1)],
        [frame("a", 1.1, 2), frame("b", 1.1, 3)],
        [frame("c", 1.2, 4, width=48)],
        [frame("d", 1.3, 5, width=30)],  # another size on a's grid: three cameras there
        [frame("a", 5.0, 6)],  # a gap restarts camera a: nothing new to prepare
    ])
    assert [(width, batch) for width, _, _, batch, *_ in engine.warm_ups] == [
        (32, 1), (32, 2), (48, 1), (30, 3)
    ]


def signature(tensors) -> tuple:
    """What a CUDA graph is captured per: shapes, dtypes and strides of the inputs."""
    return tuple((tuple(t.shape), t.dtype, tuple(t.stride())) for t in tensors)


def test_warm_up_covers_every_signature_the_worker_submits(tmp_path):
    """Stream starts, one and two cameras ready, backward switched on and off: the
    real engine's warm-up (the plan CUDA runs, run on the CPU) must have met every
    input signature of the network calls before the first frame is answered."""
    checkpoint = write_official_checkpoint(tmp_path / "v2.pth", "v2", seed=7)
    engine = FlowEngine(EngineConfig(backend="neuflow_v2", checkpoint=str(checkpoint),
                                     device="cpu"))
    engine._captures_graphs = True  # white-box: the CUDA warm-up plan, on the CPU
    backend = engine._backend
    seen = {"warm-up": set(), "frames": set()}
    phase = ["frames"]

    def spy(name, function):
        def call(*tensors):
            seen[phase[0]].add((name, signature(tensors)))
            return function(*tensors)
        return call

    def warm_up(*args, **kwargs):
        phase[0] = "warm-up"
        try:
            return real_warm_up(*args, **kwargs)
        finally:
            phase[0] = "frames"

    backend._encode = spy("encode", backend._encode)
    backend._decode_selected = spy("decode", backend._decode_selected)
    real_warm_up, engine.warm_up = engine.warm_up, warm_up
    forward, backward = WorkerSettings(), WorkerSettings(backward=True)
    batches = [
        [frame("a", 1.0, 1, 64, 48)],
        [frame("a", 1.1, 2, 64, 48), frame("b", 1.1, 3, 64, 48)],
        [frame("a", 1.2, 4, 64, 48), frame("b", 1.2, 5, 64, 48)],
        [frame("a", 1.3, 6, 64, 48)],
        [frame("a", 1.4, 7, 64, 48), frame("b", 1.4, 8, 64, 48)],
        [frame("b", 1.5, 9, 64, 48)],
        [frame("a", 5.0, 10, 64, 48)],  # restart
        [frame("a", 5.1, 11, 64, 48), frame("b", 5.1, 12, 64, 48)],
    ]
    recorder = run_worker(engine, batches, settings_per_batch=[
        forward, forward, forward, backward, backward, forward, backward, backward
    ])
    assert not [event for event in recorder.events if event[0] == "exception"]
    assert len(recorder.flows) >= 6
    assert seen["frames"], "the spy saw no network call"
    assert seen["frames"] <= seen["warm-up"]
    # Warm-up streams (one per camera) and the two cameras' own: nothing piles up.
    assert len(backend._streams) == 4


def test_stop_during_an_engine_call_returns_at_its_deadline_and_drops_the_batch():
    """A CPU compute cannot be interrupted: stop must not wait for it, nor publish its result."""
    engine = FakeEngine(hold_results=threading.Event())
    worker, recorder = start_stuck_in_a_call(engine)
    started = time.monotonic()
    assert not worker.stop(0.1)
    assert time.monotonic() - started < 1.0
    assert worker.alive
    engine.hold_results.set()
    wait_for(lambda: not worker.alive)
    assert recorder.flows == []
    assert ("inference", 1) in recorder.events  # the call did finish; only publishing was dropped


def test_workers_of_successive_activations_run_on_one_thread_one_after_another():
    """One thread (one malloc arena) for every activation; a stuck loop delays the next one."""
    thread = WorkerThread()
    engine = FakeEngine(hold_results=threading.Event())
    threads = []

    def factory():
        threads.append(threading.get_ident())
        return engine

    worker, first = start_stuck_in_a_call(engine, factory, thread)
    assert not worker.stop(0.05)

    second = Recorder()
    mailbox = FrameMailbox()
    next_worker = FlowWorker(factory, mailbox, second.sink, second, poll_interval_s=0.01,
                             thread=thread)
    next_worker.start()
    assert not second.ready.wait(0.2), "two loops ran the engine at once"
    engine.hold_results.set()
    assert second.ready.wait(5.0)
    for stamp_s in (2.0, 2.1):
        mailbox.put("", frame("", stamp_s, int(stamp_s * 10)))
        wait_for(lambda: mailbox.pending() == 0)
    wait_for(lambda: len(second.flows) == 1)
    assert next_worker.stop(2.0)
    assert first.flows == []
    assert len(threads) == 2
    assert threads[0] == threads[1] != threading.get_ident()


STEREO = WorkerSettings(stereo=StereoPairConfig("left", "right", max_stamp_difference_ns=0))


def stereo_events(recorder, kind):
    return [event[1:] for event in recorder.events if event[0] == kind]


def test_a_stereo_pair_arriving_in_two_takes_is_computed_in_one_batch_with_its_temporal_pairs():
    engine = FakeEngine()
    recorder = run_worker(engine, [
        [frame("left", 1.0, 10)], [frame("right", 1.0, 14)],
        [frame("left", 1.1, 11)], [frame("right", 1.1, 17)],
    ], settings=STEREO)
    # The first instant starts both streams (nothing to match); the second is one call:
    # left and right temporal pairs, then left -> right and (no backward flow) right -> left.
    assert engine.calls == [(4, "input")]
    left = next(f for f in recorder.flows if f.camera == "left")
    right = next(f for f in recorder.flows if f.camera == "right")
    assert right.stereo is None
    assert left.stereo.left is left.current and left.stereo.right is right.current
    assert float(left.stereo.result.forward[0, 0, 0]) == 17.0 - 11.0
    assert float(left.stereo.result.backward[0, 0, 0]) == 11.0 - 17.0
    assert stereo_events(recorder, "stereo paired") == [(SECOND,), (int(1.1 * SECOND),)]
    assert stereo_events(recorder, "stereo unpaired") == []


def test_stereo_frames_of_different_instants_are_counted_unpaired_and_not_matched():
    engine = FakeEngine()
    recorder = run_worker(engine, [
        [frame("left", 1.0, 10), frame("right", 1.0, 14)],
        [frame("left", 1.1, 11)], [frame("right", 1.1 + 0.001, 17)],
        [frame("left", 1.2, 12), frame("right", 1.2, 20)],
    ], settings=STEREO)
    # The older of the two went alone at once; the right one waited until the next
    # right frame showed that its partner is not coming.
    assert stereo_events(recorder, "stereo unpaired") == [
        ("left", int(1.1 * SECOND)), ("right", int((1.1 + 0.001) * SECOND)),
    ]
    assert all(f.stereo is None or f.current.stamp_ns == int(1.2 * SECOND)
               for f in recorder.flows)
    assert sum(f.stereo is not None for f in recorder.flows) == 1
    assert len([f for f in recorder.flows if f.camera == "right"]) == 2


def test_a_stamp_tolerance_pairs_frames_stamped_apart():
    engine = FakeEngine()
    settings = WorkerSettings(
        stereo=StereoPairConfig("left", "right", max_stamp_difference_ns=2_000_000)
    )
    recorder = run_worker(engine, [
        [frame("left", 1.0, 10), frame("right", 1.0015, 14)],
        [frame("left", 1.1, 11), frame("right", 1.1015, 17)],
    ], settings=settings)
    assert sum(f.stereo is not None for f in recorder.flows) == 1
    assert stereo_events(recorder, "stereo unpaired") == []


def test_stereo_frames_of_different_sizes_are_skipped_and_temporal_flow_goes_on():
    engine = FakeEngine()
    recorder = run_worker(engine, [
        [frame("left", 1.0, 10), frame("right", 1.0, 14, width=48)],
        [frame("left", 1.1, 11), frame("right", 1.1, 17, width=48)],
    ], settings=STEREO)
    assert stereo_events(recorder, "stereo skipped") == [("size_mismatch",), ("size_mismatch",)]
    assert sorted(f.camera for f in recorder.flows) == ["left", "right"]
    assert all(f.stereo is None for f in recorder.flows)
    assert engine.calls == [(2, "input")]
