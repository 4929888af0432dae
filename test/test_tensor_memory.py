"""Counting a computation's tensor memory: what the README's GPU memory table rests on.

The count is held against the C heap: on the CPU PyTorch takes tensor memory
from malloc, so the heap's growth, read at the same points (after each
operation), must be the count plus what is not a tensor, which a network
pass barely has.
"""

from __future__ import annotations

import ctypes
import functools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from neuflow_ros.models import NeuFlowV1, NeuFlowV2, fold_batchnorm
from neuflow_ros.tools.network_pass import run_network_pass
from neuflow_ros.tools.tensor_memory import LiveTensorBytes

FLOAT_BYTES = 4
V2_OPTIONS = {"iters_s16": 1, "iters_s8": 2}


def test_peak_is_the_most_bytes_alive_at_once():
    counter = LiveTensorBytes()
    with counter:
        first = torch.ones(1000)
        second = first * 2
        del first
        third = second + 1
        assert counter.live_bytes == 2 * 1000 * FLOAT_BYTES
        del second, third
    assert counter.live_bytes == 0
    assert counter.peak_bytes == 2 * 1000 * FLOAT_BYTES


def test_views_and_in_place_results_share_their_storage():
    counter = LiveTensorBytes()
    with counter:
        flat = torch.zeros(250)
        grid = flat.view(25, 10)
        flat.add_(1)
        row = grid[3]
        del flat
        assert counter.live_bytes == 250 * FLOAT_BYTES  # grid and row still hold it
        del grid, row
    assert counter.live_bytes == 0
    assert counter.peak_bytes == 250 * FLOAT_BYTES


def test_storages_from_before_never_count():
    weights = torch.ones(10, 10)
    counter = LiveTensorBytes()
    with counter:
        weights.t()
        weights.view(-1)
        weights.mul_(2)
        assert counter.peak_bytes == 0
        product = weights @ weights
    assert counter.peak_bytes == product.nbytes == 100 * FLOAT_BYTES


class MallocInfo(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@functools.cache
def _mallinfo2():
    """glibc's mallinfo2, looked up once: it is read after every operation of a pass."""
    library = ctypes.CDLL(None)  # the process's own symbols, libc's among them
    function = getattr(library, "mallinfo2", None)
    if function is not None:
        function.restype = MallocInfo
    return function


def heap_in_use() -> int:
    """Bytes malloc has handed out and not got back."""
    mallinfo2 = _mallinfo2()
    if mallinfo2 is None:
        pytest.skip("needs glibc 2.33 or newer (mallinfo2)")
    info = mallinfo2()
    return info.uordblks + info.hblkhd


class HeapPeak(TorchDispatchMode):
    """The heap's growth since the start, read after every operation, at its highest."""

    def __init__(self) -> None:
        super().__init__()
        self.start = heap_in_use()
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, heap_in_use() - self.start)
        return result


@pytest.mark.parametrize(("network", "options"), [(NeuFlowV2, V2_OPTIONS), (NeuFlowV1, {})])
def test_a_network_pass_counts_what_the_heap_grows_by(network, options):
    model = fold_batchnorm(network().eval())
    for _ in range(2):  # what PyTorch and the dispatch machinery set up once
        with LiveTensorBytes(), HeapPeak():
            run_network_pass(model, options, 160, 128, cameras=1, backward=True)
    counter = LiveTensorBytes()
    heap = HeapPeak()
    with counter, heap:
        run_network_pass(model, options, 160, 128, cameras=1, backward=True)
    assert counter.peak_bytes > 2**20
    assert heap.peak == pytest.approx(counter.peak_bytes, rel=0.02)


@pytest.mark.parametrize(("network", "options"), [(NeuFlowV2, V2_OPTIONS), (NeuFlowV1, {})])
def test_the_meta_device_counts_what_the_cpu_does(network, options):
    """Why the table can be counted for any size in no time: meta tensors have the
    CPU's shapes and storages, without data."""
    peaks = []
    for device in ("cpu", "meta"):
        model = fold_batchnorm(network().eval()).to(device)
        counter = LiveTensorBytes()
        with counter:
            run_network_pass(model, options, 160, 128, cameras=2, backward=False)
        peaks.append(counter.peak_bytes)
    assert peaks[0] == peaks[1]
