"""What a CUDA graph may contain, checked on the CPU.

The functions the NeuFlow backend captures (encode, and the decode with its
gathering) run here under a dispatch mode that sees every ATen operation. A
tensor built from Python data (``torch.tensor``, ``new_tensor``) appears as
``lift_fresh``; reading a value on the host as ``_local_scalar_dense``; ops
whose output size depends on values (``nonzero``) need the host too. On CUDA
each is a host-device copy or sync: illegal inside a capture, and a stall of
the host in eager mode. The same path, run on PyTorch's ``meta`` device in
fp16, shows that every tensor it makes lands on the model's device: on a GPU
a tensor left on the CPU is a device-mismatch error at the first frame.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
import torch
from neuflow_weights import write_official_checkpoint
from torch.utils._python_dispatch import TorchDispatchMode

from neuflow_ros.flow.engine import EngineConfig, FlowEngine, FramePair
from neuflow_ros.flow.frame_geometry import plan_geometry
from neuflow_ros.flow.neuflow_backend import NeuFlowBackend, _PairGroup
from neuflow_ros.models import NeuFlowV1, NeuFlowV2, fold_batchnorm
from neuflow_ros.tools.tensor_memory import tensors_in

HOST_BOUND_OPS = {
    "lift_fresh",
    "lift_fresh_copy",
    "_local_scalar_dense",
    "item",
    "nonzero",
    "masked_select",
    "_unique2",
    "unique_consecutive",
    "unique_dim",
    "repeat_interleave",
    "equal",
    "is_nonzero",
}


@pytest.fixture(scope="module")
def checkpoint_paths(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("graphed_weights")
    return {
        version: str(write_official_checkpoint(folder / f"{version}.pth", version[-2:], seed))
        for seed, version in enumerate(("neuflow_v2", "neuflow_v1"), start=5)
    }


class HostBoundOps(TorchDispatchMode):
    """Records every operation that needs data from, or a sync with, the host."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in HOST_BOUND_OPS:
            self.found.append(str(func))
        return func(*args, **(kwargs or {}))


def watched(function, recorder: HostBoundOps):
    def call(*inputs):
        with recorder:
            return function(*inputs)

    return call


@pytest.mark.parametrize("version", ["neuflow_v2", "neuflow_v1"])
def test_graphed_functions_need_nothing_from_the_host(checkpoint_paths, version):
    engine = FlowEngine(
        EngineConfig(backend=version, checkpoint=checkpoint_paths[version], device="cpu")
    )
    backend = engine._backend  # white-box: exactly the functions CUDA would capture
    recorder = HostBoundOps()
    backend._encode = watched(backend._encode, recorder)
    backend._decode_selected = watched(backend._decode_selected, recorder)
    generator = np.random.default_rng(0)
    frames = [generator.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    for backward in (False, True):  # stream start, steady state, backward, two cameras
        engine.compute([FramePair(frames[0], frames[1], "rgb", stream="a")], backward=backward)
        engine.compute(
            [
                FramePair(frames[1], frames[2], "rgb", stream="a"),
                FramePair(frames[0], frames[2], "rgb", stream="b"),
            ],
            backward=backward,
        )
    assert recorder.found == []


def test_the_check_sees_tensors_built_from_python_data():
    recorder = HostBoundOps()
    with recorder:
        coords = torch.ones(2, 2)
        coords * coords.new_tensor([2.0, 3.0])
        bool(coords.sum() > 0)
    assert recorder.found == ["aten.lift_fresh.default", "aten._local_scalar_dense.default"]


class SharedPoolReplays:
    """What replaying CUDA graphs that share one memory pool does, simulated on the CPU.

    A wrapped function reads copies of its inputs (a graph's static inputs); then
    whatever the previous call of any wrapped function returned is overwritten (a
    replay may reuse any memory of the pool, and returns its outputs in the same
    tensors each time). Anything the backend still reads from an earlier call's
    outputs then reads NaN.
    """

    def __init__(self) -> None:
        self._previous_outputs: list[torch.Tensor] = []

    def wrap(self, function):
        def replay(*inputs):
            static_inputs = [tensor.clone() for tensor in inputs]
            for output in self._previous_outputs:
                output.fill_(float("nan"))
            result = function(*static_inputs)
            self._previous_outputs = (
                [result]
                if isinstance(result, torch.Tensor)
                else [getattr(result, field.name) for field in fields(result)]
            )
            return result

        return replay


@pytest.mark.parametrize("version", ["neuflow_v2", "neuflow_v1"])
def test_graph_outputs_are_consumed_before_the_next_replay(checkpoint_paths, version):
    """Why one pool per engine is safe: the backend copies, keeps (streaming) or
    downloads every output before its next graph call, even with every batch
    submitted before the first result is taken, two cameras, backward flow and a
    stream restarting."""
    path = checkpoint_paths[version]
    engine = FlowEngine(EngineConfig(backend=version, checkpoint=path, device="cpu"))
    reference = FlowEngine(
        EngineConfig(backend=version, checkpoint=path, device="cpu", streaming=False)
    )
    backend = engine._backend  # white-box: the two functions CUDA would capture
    pool = SharedPoolReplays()
    backend._encode = pool.wrap(backend._encode)
    backend._decode_selected = pool.wrap(backend._decode_selected)
    generator = np.random.default_rng(1)
    f = [generator.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(5)]
    batches = [
        ([FramePair(f[0], f[1], "rgb", stream="a")], False),
        ([FramePair(f[1], f[2], "rgb", stream="a"), FramePair(f[0], f[2], "rgb", "b")], False),
        ([FramePair(f[2], f[3], "rgb", stream="a"), FramePair(f[2], f[3], "rgb", "b")], True),
        ([FramePair(f[3], f[4], "rgb", stream="b")], True),
        ([FramePair(f[0], f[4], "rgb", stream="a")], False),
    ]
    pending = [engine.submit(pairs, backward=backward) for pairs, backward in batches]
    for (pairs, backward), submitted in zip(batches, pending, strict=True):
        expected = reference.compute(pairs, backward=backward)
        for got, want in zip(submitted.result(), expected, strict=True):
            np.testing.assert_allclose(got.forward, want.forward, atol=1e-4)
            if backward:
                np.testing.assert_allclose(got.backward, want.backward, atol=1e-4)
    assert engine.encoded_frames == 2 + 3 + 2 + 1 + 2  # streams were kept, and restarted


class DeviceMixing(TorchDispatchMode):
    """Records every operation whose tensors are on more than one device. A 0-d CPU
    tensor is exempt, as it is on CUDA (it is passed as a scalar); copies are not:
    inside a graph a copy from the host is illegal."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = tensors_in((args, kwargs or {}))
        devices = {t.device for t in inputs if not (t.device.type == "cpu" and t.dim() == 0)}
        result = func(*args, **(kwargs or {}))
        if len(devices | {t.device for t in tensors_in(result)}) > 1:
            self.found.append(str(func))
        return result


@pytest.mark.parametrize("network", [NeuFlowV2, NeuFlowV1])
@pytest.mark.parametrize("inference_size", [None, (96, 64)])
def test_graphed_functions_keep_every_tensor_on_the_models_device(network, inference_size):
    """The functions CUDA captures, run in fp16 on a device that is not the CPU
    (``meta``: shapes without values), fed as on CUDA: frames already on the device,
    pair indices made by the backend. Stream start, two cameras, kept encodings and
    backward flow each make their own tensors."""
    device = torch.device("meta")
    model = fold_batchnorm(network().eval()).to(device=device, dtype=torch.float16)
    backend = NeuFlowBackend(
        network.__name__.replace("NeuFlowV", "neuflow_v"),
        model,
        device,
        torch.float16,
        inference_size,
        iters_s16=1,
        iters_s8=2,
    )
    recorder = DeviceMixing()
    encode = watched(backend._encode, recorder)
    backend._encode = lambda images: encode(images.to(device))  # the CPU uploader's output
    backend._decode_selected = watched(backend._decode_selected, recorder)
    generator = np.random.default_rng(2)
    f = [generator.integers(0, 256, (50, 70, 3), dtype=np.uint8) for _ in range(5)]
    grid = plan_geometry(70, 50, inference_size)
    two_cameras = [FramePair(f[1], f[2], "bgr", stream="a"), FramePair(f[0], f[2], "bgr", "b")]
    kept_by_both = [FramePair(f[2], f[3], "bgr", stream="a"), FramePair(f[2], f[3], "bgr", "b")]
    batches = [
        ([FramePair(f[0], f[1], "bgr", stream="a")], False),
        (two_cameras, False),
        (kept_by_both, True),
        ([FramePair(f[3], f[4], "bgr", stream="a")], True),
    ]
    for pairs, backward in batches:
        group = _PairGroup(list(range(len(pairs))), pairs, grid)
        with torch.inference_mode():
            backend._run_batch([group], backward)  # white-box: submit minus the download
        assert group.flow is not None
        assert group.flow.device == device
        assert group.flow.shape == (
            len(pairs) * (2 if backward else 1),
            2,
            grid.grid_height,
            grid.grid_width,
        )
    assert backend.encoded_frames == 2 + 3 + 2 + 1  # the kept encodings were used
    assert recorder.found == []


def test_the_device_check_sees_a_cpu_tensor_and_a_copy_from_the_host():
    recorder = DeviceMixing()
    on_meta = torch.empty(2, 3, device="meta")
    with recorder:
        on_meta * torch.tensor(2.0)  # a 0-d CPU tensor is a scalar on CUDA too
        on_meta.index_select(0, torch.zeros(1, dtype=torch.long))
        torch.ones(2, 3).to(on_meta.device)
    assert recorder.found == ["aten.index_select.default", "aten._to_copy.default"]
