"""CUDA graph replay of the network's steady-state passes.

At batch 1 NeuFlow is a few hundred small kernels; on a GPU the time goes to
launching them from Python, not to arithmetic. A CUDA graph records the
launches once per input signature and replays them with one call. Shapes
change rarely (a new camera resolution or batch layout), so a graph is
captured per signature after a few eager calls (which also let cuDNN pick
its algorithms) and kept in a small LRU.

Replay writes into the same output tensors every time: outputs are valid
until the next call with the same signature, and callers must copy what they
keep longer. Anything that fails to capture (an operation that syncs with the
host, an old driver) runs eagerly from then on for that signature, with one
warning: graphs are an optimisation, never a reason to stop.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from neuflow_ros.flow.bounded_cache import BoundedCache

EAGER_CALLS_BEFORE_CAPTURE = 2
"""Eager calls per signature first: cuDNN autotuning and lazily built constants
(coordinate grids) must be settled before recording."""
MAX_GRAPHS = 8

_log = logging.getLogger(__name__)


@dataclass
class _CapturedGraph:
    graph: torch.cuda.CUDAGraph
    inputs: list[Tensor]
    outputs: Any
    keep_alive: list[Tensor]
    """Tensors the graph reads by address but does not own (cached constants)."""


class _Failed:
    """Marks a signature whose capture failed: it runs eagerly from then on."""


_FAILED = _Failed()
_Signature = tuple[tuple[tuple[int, ...], torch.dtype, tuple[int, ...]], ...]


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
        keep_alive: Callable[[], list[Tensor]] = list,
        logger: logging.Logger | None = None,
    ) -> None:
        self._function = function
        self._name = name
        self._keep_alive = keep_alive
        self._logger = logger or _log
        self._graphs: BoundedCache[_CapturedGraph | _Failed] = BoundedCache(MAX_GRAPHS)
        self._eager_calls: dict[_Signature, int] = {}
        self.captures = 0
        """Graphs recorded so far (a shape change records another)."""
        self.capture_failures = 0

    def __call__(self, *inputs: Tensor) -> Any:
        signature = tuple((tuple(t.shape), t.dtype, tuple(t.stride())) for t in inputs)
        entry = self._graphs.get(signature)
        if entry is None:
            calls = self._eager_calls.get(signature, 0)
            if calls < EAGER_CALLS_BEFORE_CAPTURE:
                self._eager_calls[signature] = calls + 1
                return self._function(*inputs)
            entry = self._capture(signature, inputs)
            self._graphs.put(signature, entry)
        if isinstance(entry, _Failed):
            return self._function(*inputs)
        for static, given in zip(entry.inputs, inputs, strict=True):
            static.copy_(given)
        entry.graph.replay()
        return entry.outputs

    def _capture(self, signature: _Signature, inputs: Sequence[Tensor]) -> _CapturedGraph | _Failed:
        device = inputs[0].device
        static_inputs = [tensor.clone() for tensor in inputs]
        try:
            # Warm-up on a side stream, as capture requires, then record.
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                self._function(*static_inputs)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # Thread-local: engines of other threads (composable nodes in one
            # container) keep allocating and launching while this one records;
            # the default, global mode would fail their calls, not just this capture.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                outputs = self._function(*static_inputs)
        except Exception as error:  # any capture failure means: run eagerly
            self._logger.warning(
                "CUDA graph capture of %s failed for input shapes %s (%s: %s); running it "
                "without a graph",
                self._name,
                [list(shape) for shape, _, _ in signature],
                type(error).__name__,
                error,
            )
            self.capture_failures += 1
            # A broken capture can leave errors queued on the device; they must not
            # surface in the next, eager, call of a signature now marked failed.
            with contextlib.suppress(Exception):
                torch.cuda.synchronize(device)
            return _FAILED
        self.captures += 1
        return _CapturedGraph(graph, static_inputs, outputs, self._keep_alive())
