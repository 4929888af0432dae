"""CUDA graph replay of the network's steady-state passes.

At batch 1 NeuFlow is a few hundred small kernels; on a GPU the time goes to
launching them from Python, not to arithmetic. A CUDA graph records the
launches once per input signature and replays them with one call. Shapes
change rarely (a new camera resolution or batch layout), so a graph is
captured per signature after a few eager calls (which also let cuDNN pick
its algorithms) and kept in a small LRU; ``FlowEngine.warm_up`` makes those
calls for every signature a camera setup produces, so nothing is captured
mid-flight.

Each engine owns one ``EngineGraphs``: its capture stream, and one memory
pool that all its graphs share. Sharing is safe because the engine reads
every graph's outputs (copies, downloads, stream encodings) on its compute
stream before it replays any graph again: a later replay may overwrite
memory an earlier graph's outputs used. Outputs are therefore valid only
until the engine's next graph call.

A failed capture (an operation that syncs with the host, an old driver)
is contained: the thread's stream and the caching allocator are left as
they were, graphs are turned off for that engine with one ERROR naming the
cause, and it is never retried. Graphs are an optimisation, never a reason
to stop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from neuflow_ros.flow.bounded_cache import BoundedCache

EAGER_CALLS_BEFORE_CAPTURE = 2
"""Eager calls per signature first: cuDNN autotuning and lazily built constants
(coordinate grids) must be settled before recording."""
MAX_GRAPHS = 8
"""Per graphed function. The warm-up for N cameras on one grid captures 2N encode
signatures (1..2N images: streams continuing, partly or all starting) and 2N decode
signatures (1..N cameras, backward off and on), so up to 4 cameras on one grid keep
all theirs; beyond that the least recently used are dropped and captured again when
met. Graphs share the engine's pool, so each one kept costs only its input copies and
outputs, not its intermediates."""

_CAPTURE_LOCK = threading.Lock()
"""Captures are serialized process-wide: two captures at once on one device
(engines of two nodes in one process) are undefined behaviour in CUDA."""

_log = logging.getLogger(__name__)


class CudaCalls(Protocol):
    """The CUDA operations a capture needs; tests drive the failure paths through a fake."""

    def new_stream(self, device: torch.device) -> Any: ...

    def current_stream(self, device: torch.device) -> Any: ...

    def on_stream(self, device: torch.device, stream: Any) -> contextlib.AbstractContextManager: ...

    def pool_handle(self) -> Any: ...

    def new_graph(self) -> Any: ...

    def end_allocating_to_pool(self, device: torch.device, pool: Any) -> bool: ...

    def release_pool(self, device: torch.device, pool: Any) -> None: ...


class TorchCudaCalls:
    """``CudaCalls`` on torch.cuda, including the private allocator calls that
    undo what a failed ``capture_end`` leaves behind (names differ by torch version)."""

    def new_stream(self, device: torch.device) -> torch.cuda.Stream:
        return torch.cuda.Stream(device)

    def current_stream(self, device: torch.device) -> torch.cuda.Stream:
        return torch.cuda.current_stream(device)

    @contextlib.contextmanager
    def on_stream(self, device: torch.device, stream: torch.cuda.Stream) -> Iterator[None]:
        with torch.cuda.device(device), torch.cuda.stream(stream):
            yield

    def pool_handle(self) -> Any:
        return torch.cuda.graph_pool_handle()

    def new_graph(self) -> torch.cuda.CUDAGraph:
        return torch.cuda.CUDAGraph()

    def end_allocating_to_pool(self, device: torch.device, pool: Any) -> bool:
        """True when the allocator was still routing allocations into ``pool``.

        ``capture_end`` raises at ``cudaStreamEndCapture`` before it tells the
        allocator the capture is over; left so, every later ``empty_cache`` and
        capture fails (torch 2.3 to at least 2.11).
        """
        # torch >= 2.8 names it _cuda_endAllocateToPool; 2.3-2.7 the older name.
        end = getattr(torch._C, "_cuda_endAllocateToPool", None) or getattr(
            torch._C, "_cuda_endAllocateCurrentStreamToPool", None
        )
        if end is None:
            return False
        try:
            end(_device_index(device), pool)
        except RuntimeError:  # "not currently recording to mempool_id": torch had ended it
            return False
        return True

    def release_pool(self, device: torch.device, pool: Any) -> None:
        """Drop the reference a failed capture holds on ``pool``; torch releases it only
        for captures that ended, so without this the pool's memory is never freed."""
        release = getattr(torch._C, "_cuda_releasePool", None)
        if release is not None:
            with contextlib.suppress(RuntimeError):
                release(_device_index(device), pool)


def _device_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


@dataclass
class _CapturedGraph:
    graph: Any
    inputs: list[Tensor]
    outputs: Any
    keep_alive: list[Tensor]
    """Tensors the graph reads by address but does not own (cached constants)."""


class EngineGraphs:
    """What one engine's graphed functions share: device, capture stream, memory pool,
    and whether graphs are still on (a failed capture turns them off for good)."""

    def __init__(
        self,
        device: torch.device,
        logger: logging.Logger | None = None,
        cuda: CudaCalls | None = None,
    ) -> None:
        self._cuda = cuda or TorchCudaCalls()
        self._device = device
        self._logger = logger or _log
        self._capture_stream = self._cuda.new_stream(device)
        self._pool = self._cuda.pool_handle()
        self.enabled = True

    def capture(
        self,
        function: Callable[..., Any],
        inputs: Sequence[Tensor],
        name: str,
        keep_alive: Callable[[], list[Tensor]],
    ) -> _CapturedGraph | None:
        """Record ``function(*inputs)``; None (and graphs off) when that fails."""
        cuda = self._cuda
        static_inputs = [tensor.clone() for tensor in inputs]
        graph = cuda.new_graph()
        with _CAPTURE_LOCK:
            caller = cuda.current_stream(self._device)
            self._capture_stream.wait_stream(caller)
            with cuda.on_stream(self._device, self._capture_stream):
                outputs, error = self._record(graph, function, static_inputs)
            caller.wait_stream(self._capture_stream)
        if error is not None:
            self.enabled = False
            self._logger.error(
                "CUDA graph capture of %s failed for input shapes %s (%s: %s); CUDA graphs are "
                "off for this engine from now on (it runs eagerly, correct but slower)",
                name,
                [list(tensor.shape) for tensor in inputs],
                type(error).__name__,
                error,
                exc_info=error,
            )
            return None
        return _CapturedGraph(graph, static_inputs, outputs, keep_alive())

    def _record(
        self, graph: Any, function: Callable[..., Any], static_inputs: list[Tensor]
    ) -> tuple[Any, BaseException | None]:
        """(outputs, None) or (None, the first error); the capture is always ended."""
        try:
            # One eager call on the capture stream first: lazy initialisation
            # (cuBLAS workspaces, cuDNN plans) must not happen inside the capture.
            function(*static_inputs)
            graph.capture_begin(pool=self._pool, capture_error_mode="thread_local")
        except Exception as error:
            self._release_failed_capture()
            return None, error
        outputs, error = None, None
        try:
            outputs = function(*static_inputs)
        except Exception as raised:
            error = raised
        try:
            graph.capture_end()
        except Exception as raised:
            self._release_failed_capture()
            error = error or raised
        return (None, error) if error is not None else (outputs, None)

    def _release_failed_capture(self) -> None:
        """Undo what torch leaves behind when a capture fails between its start and end."""
        if self._cuda.end_allocating_to_pool(self._device, self._pool):
            # Failed before the allocator heard of the end, so also before torch
            # counted the graph as captured: its pool reference is ours to drop.
            self._cuda.release_pool(self._device, self._pool)


class GraphedFunction:
    """Calls ``function(*tensors)`` through a CUDA graph per input signature.

    ``keep_alive`` returns the tensors the function reads that live outside
    its inputs and parameters (caches that may drop entries later); each
    graph holds on to them.
    """

    def __init__(
        self,
        function: Callable[..., Any],
        name: str,
        graphs: EngineGraphs,
        keep_alive: Callable[[], list[Tensor]] = list,
    ) -> None:
        self.function = function
        self._name = name
        self._engine_graphs = graphs
        self._keep_alive = keep_alive
        self._graphs: BoundedCache[_CapturedGraph] = BoundedCache(MAX_GRAPHS)
        self._eager_calls: BoundedCache[int] = BoundedCache(4 * MAX_GRAPHS)
        self.captures = 0
        """Graphs recorded so far (a shape change records another)."""
        self.capture_failures = 0

    @property
    def signatures(self) -> int:
        """Graphs held now."""
        return len(self._graphs)

    def __call__(self, *inputs: Tensor) -> Any:
        if not self._engine_graphs.enabled:
            self._graphs.clear()
            return self.function(*inputs)
        signature = tuple((tuple(t.shape), t.dtype, tuple(t.stride())) for t in inputs)
        entry = self._graphs.get(signature)
        if entry is None:
            calls = self._eager_calls.get(signature) or 0
            if calls < EAGER_CALLS_BEFORE_CAPTURE:
                self._eager_calls.put(signature, calls + 1)
                return self.function(*inputs)
            entry = self._engine_graphs.capture(self.function, inputs, self._name, self._keep_alive)
            if entry is None:
                self.capture_failures += 1
                self._graphs.clear()
                return self.function(*inputs)
            self.captures += 1
            self._graphs.put(signature, entry)
        for static, given in zip(entry.inputs, inputs, strict=True):
            static.copy_(given)
        entry.graph.replay()
        return entry.outputs
