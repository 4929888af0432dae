"""CUDA graph capture, driven on the CPU through a fake of the CUDA calls it makes.

The fake behaves as torch does where it matters: a capture routes the
allocator into the pool until ``capture_end`` succeeds (a failing end leaves
it routing, as torch 2.3-2.11 do), and an operation that needs the host
inside a capture fails. What is checked is what the engine does around
that: streams, pool, lock, logging, and never trying again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import pytest
import torch

from neuflow_ros.flow.cuda_graphs import (
    EAGER_CALLS_BEFORE_CAPTURE,
    MAX_GRAPHS,
    EngineGraphs,
    GraphedFunction,
)

DEVICE = torch.device("cpu")  # the fake ignores it


class FakeStream:
    def __init__(self, name: str, cuda: FakeCuda) -> None:
        self.name = name
        self._cuda = cuda

    def wait_stream(self, other: FakeStream) -> None:
        self._cuda.events.append(("wait", self.name, other.name))


class FakeGraph:
    def __init__(self, cuda: FakeCuda) -> None:
        self._cuda = cuda

    def capture_begin(self, pool, capture_error_mode) -> None:
        cuda = self._cuda
        cuda.begins.append((pool, capture_error_mode, cuda.stack[-1].name))
        with cuda.lock:
            cuda.capturing += 1
            cuda.most_at_once = max(cuda.most_at_once, cuda.capturing)
        cuda.routing_to_pool = True
        if cuda.begin_error is not None:  # torch routes the allocator first, then begins
            with cuda.lock:
                cuda.capturing -= 1
            raise cuda.begin_error
        time.sleep(cuda.capture_seconds)

    def capture_end(self) -> None:
        cuda = self._cuda
        with cuda.lock:
            cuda.capturing -= 1
        if cuda.end_error is not None or cuda.invalidated:
            cuda.invalidated = False
            raise cuda.end_error or RuntimeError("cudaErrorStreamCaptureInvalidated")
        cuda.routing_to_pool = False

    def replay(self) -> None:
        self._cuda.replays += 1


class FakeCuda:
    """``CudaCalls`` with the state a test asserts on."""

    def __init__(self, capture_seconds: float = 0.0) -> None:
        self.stack = [FakeStream("default", self)]
        self.events: list[tuple] = []
        self.begins: list[tuple] = []
        self.released: list[object] = []
        self.routing_to_pool = False
        self.invalidated = False
        self.end_error: Exception | None = None
        self.begin_error: Exception | None = None
        self.replays = 0
        self.capturing = 0
        self.most_at_once = 0
        self.capture_seconds = capture_seconds
        self.lock = threading.Lock()
        self._pools = 0

    def new_stream(self, device):
        return FakeStream(f"stream{len(self.events)}-{id(self)}", self)

    def current_stream(self, device):
        return self.stack[-1]

    @contextlib.contextmanager
    def on_stream(self, device, stream):
        self.stack.append(stream)
        try:
            yield
        finally:
            self.stack.pop()

    def pool_handle(self):
        self._pools += 1
        return ("pool", self._pools)

    def new_graph(self):
        return FakeGraph(self)

    def end_allocating_to_pool(self, device, pool) -> bool:
        was_routing, self.routing_to_pool = self.routing_to_pool, False
        return was_routing

    def release_pool(self, device, pool) -> None:
        self.released.append(pool)


def doubling(cuda: FakeCuda, syncs: bool = False):
    """x -> 2x; with ``syncs`` it needs the host, which a capture does not allow."""

    def function(tensor: torch.Tensor) -> torch.Tensor:
        if syncs and cuda.capturing:
            cuda.invalidated = True
            raise RuntimeError("operation not permitted when stream is capturing")
        return tensor * 2

    return function


def call_until_captured(graphed: GraphedFunction, tensor: torch.Tensor) -> list[torch.Tensor]:
    return [graphed(tensor) for _ in range(EAGER_CALLS_BEFORE_CAPTURE + 1)]


def test_failed_capture_is_contained_logged_once_and_never_retried(caplog):
    cuda = FakeCuda()
    graphs = EngineGraphs(DEVICE, logging.getLogger("engine"), cuda)
    failing = GraphedFunction(doubling(cuda, syncs=True), "decode", graphs)
    other = GraphedFunction(doubling(cuda), "encode", graphs)
    tensor = torch.arange(4.0)
    with caplog.at_level(logging.WARNING):
        results = call_until_captured(failing, tensor)
        results += [failing(tensor) for _ in range(5)] + call_until_captured(other, tensor)
    for result in results:  # every call answered, eagerly
        torch.testing.assert_close(result, tensor * 2)
    assert len(cuda.begins) == 1, "a failed capture must not be tried again, nor another one"
    assert (failing.capture_failures, other.captures) == (1, 0)
    assert not graphs.enabled
    assert [stream.name for stream in cuda.stack] == ["default"], "thread left on capture stream"
    assert not cuda.routing_to_pool, "allocator left believing a capture is under way"
    assert cuda.released == [cuda.begins[0][0]], "the failed capture's pool reference is kept"
    errors = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [record.levelno for record in errors] == [logging.ERROR]
    assert "decode" in errors[0].getMessage()
    assert "RuntimeError: operation not permitted when stream is capturing" in (
        errors[0].getMessage()
    )
    assert "not permitted when stream is capturing" in str(errors[0].exc_info[1])


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ("begin", "CUDA error: operation not supported"),  # an old driver
        ("end", "CUDA error: operation failed due to a previous error"),
    ],
)
def test_capture_begin_or_end_failing_alone_is_contained_too(caplog, stage, message):
    cuda = FakeCuda()
    setattr(cuda, f"{stage}_error", RuntimeError(message))
    graphs = EngineGraphs(DEVICE, logging.getLogger("engine"), cuda)
    graphed = GraphedFunction(doubling(cuda), "encode", graphs)
    tensor = torch.ones(3)
    with caplog.at_level(logging.ERROR):
        for result in [*call_until_captured(graphed, tensor), graphed(tensor)]:
            torch.testing.assert_close(result, tensor * 2)
    assert len(cuda.begins) == 1 and not graphs.enabled and graphed.capture_failures == 1
    assert [stream.name for stream in cuda.stack] == ["default"]
    assert not cuda.routing_to_pool and len(cuda.released) == 1
    assert message in caplog.records[-1].getMessage()


def test_a_python_error_in_a_clean_capture_leaves_the_pool_to_torch():
    """capture_end succeeded: torch counts the graph as captured and releases its pool itself."""
    cuda = FakeCuda()
    graphs = EngineGraphs(DEVICE, logging.getLogger("engine"), cuda)
    calls = []

    def raises_while_capturing(tensor):
        calls.append(cuda.capturing)
        if cuda.capturing:
            raise ValueError("shape check")
        return tensor + 1

    graphed = GraphedFunction(raises_while_capturing, "decode", graphs)
    call_until_captured(graphed, torch.zeros(2))
    assert not graphs.enabled and cuda.released == []


def test_an_engines_graphs_share_its_pool_and_capture_stream():
    cuda = FakeCuda()
    graphs = EngineGraphs(DEVICE, logging.getLogger("engine"), cuda)
    encode = GraphedFunction(doubling(cuda), "encode", graphs)
    decode = GraphedFunction(doubling(cuda), "decode", graphs)
    for graphed, size in ((encode, 2), (encode, 3), (decode, 4)):
        call_until_captured(graphed, torch.ones(size))
        graphed(torch.ones(size))  # a replay now
    assert (encode.captures, decode.captures, cuda.replays) == (2, 1, 6)
    pools = {pool for pool, _, _ in cuda.begins}
    streams = {stream for _, _, stream in cuda.begins}
    assert len(pools) == 1 and len(streams) == 1 and streams != {"default"}
    assert {mode for _, mode, _ in cuda.begins} == {"thread_local"}
    (capture_stream,) = streams
    # Inputs are ready before the capture stream starts; the caller waits for it after.
    assert ("wait", capture_stream, "default") in cuda.events
    assert ("wait", "default", capture_stream) in cuda.events
    other = EngineGraphs(DEVICE, logging.getLogger("engine"), cuda)
    call_until_captured(GraphedFunction(doubling(cuda), "encode", other), torch.ones(2))
    assert cuda.begins[-1][0] not in pools and cuda.begins[-1][2] != capture_stream


def test_captures_are_serialized_across_engines():
    cuda = FakeCuda(capture_seconds=0.02)
    engines = [EngineGraphs(DEVICE, logging.getLogger("engine"), cuda) for _ in range(3)]

    def run(graphs: EngineGraphs) -> None:
        graphed = GraphedFunction(doubling(cuda), "encode", graphs)
        for size in range(2, 5):
            call_until_captured(graphed, torch.ones(size))

    threads = [threading.Thread(target=run, args=(graphs,)) for graphs in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10.0)
    assert len(cuda.begins) == 9
    assert cuda.most_at_once == 1


def test_captured_signatures_are_bounded():
    cuda = FakeCuda()
    graphed = GraphedFunction(
        doubling(cuda), "encode", EngineGraphs(DEVICE, logging.getLogger("engine"), cuda)
    )
    for size in range(1, MAX_GRAPHS + 4):
        call_until_captured(graphed, torch.ones(size))
    assert graphed.captures == MAX_GRAPHS + 3
    assert graphed.signatures == MAX_GRAPHS


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_failed_capture_leaves_the_process_able_to_capture(caplog):
    """The real thing: a host sync inside a capture, then empty_cache and a clean capture."""
    device = torch.device("cuda", torch.cuda.current_device())
    failing_graphs = EngineGraphs(device, logging.getLogger("engine"))

    def syncs(tensor):
        return tensor * float(tensor.sum())  # .item() inside: illegal while capturing

    failing = GraphedFunction(syncs, "decode", failing_graphs)
    tensor = torch.ones(8, device=device)
    with caplog.at_level(logging.ERROR):
        for result in call_until_captured(failing, tensor):
            torch.testing.assert_close(result, tensor * 8)
    assert not failing_graphs.enabled and failing.capture_failures == 1
    assert torch.cuda.current_stream(device) == torch.cuda.default_stream(device)
    assert not torch.cuda.is_current_stream_capturing()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()  # asserted inside torch while the allocator thinks it captures
    healthy = GraphedFunction(lambda x: x * 3, "encode", EngineGraphs(device))
    torch.testing.assert_close(call_until_captured(healthy, tensor)[-1], tensor * 3)
    torch.testing.assert_close(healthy(tensor + 1), (tensor + 1) * 3)  # replayed
    assert healthy.captures == 1 and healthy.capture_failures == 0
