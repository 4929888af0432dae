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

import itertools

import numpy as np
import pytest
import torch
import torch.utils._pytree as pytree
from neuflow_weights import write_official_checkpoint
from torch.utils._python_dispatch import TorchDispatchMode

from neuflow_ros.flow.engine import EngineConfig, FlowEngine, FramePair
from neuflow_ros.flow.frame_geometry import plan_geometry
from neuflow_ros.flow.neuflow_backend import NeuFlowBackend, _PairGroup
from neuflow_ros.models import NeuFlowV1, NeuFlowV2, fold_batchnorm

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


def test_encode_outputs_are_read_before_the_decode_runs(checkpoint_paths):
    """An engine's graphs share one memory pool, so a decode replay may overwrite what the
    encode replay returned. Simulated here: the decode copies its inputs (as a graph's
    static inputs do), then wipes the encode's outputs. Streaming keeps encodings across
    calls; its flow must still equal flow computed without keeping anything."""
    path = checkpoint_paths["neuflow_v2"]
    engine = FlowEngine(EngineConfig(backend="neuflow_v2", checkpoint=path, device="cpu"))
    reference = FlowEngine(
        EngineConfig(backend="neuflow_v2", checkpoint=path, device="cpu", streaming=False)
    )
    backend = engine._backend  # white-box: the two functions CUDA would capture
    encode, decode = backend._encode, backend._decode_selected
    latest: list = []

    def encode_into_shared_memory(images):
        latest[:] = [encode(images)]
        return latest[0]

    def decode_over_shared_memory(*tensors):
        static_inputs = [tensor.clone() for tensor in tensors]
        for output in (latest[0].features_s16, latest[0].features_s8, latest[0].upsample_context):
            output.fill_(float("nan"))
        return decode(*static_inputs)

    backend._encode = encode_into_shared_memory
    backend._decode_selected = decode_over_shared_memory
    generator = np.random.default_rng(1)
    frames = [generator.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(4)]
    for previous, current in itertools.pairwise(frames):
        (got,) = engine.compute([FramePair(previous, current, "rgb", stream="cam")])
        (expected,) = reference.compute([FramePair(previous, current, "rgb")])
        np.testing.assert_allclose(got.forward, expected.forward, atol=1e-4)
    assert engine.encoded_frames == len(frames)


class DeviceMixing(TorchDispatchMode):
    """Records every operation whose tensors are on more than one device. A 0-d CPU
    tensor is exempt, as it is on CUDA (it is passed as a scalar); copies are not:
    inside a graph a copy from the host is illegal."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        tensors = [
            value
            for value in pytree.tree_leaves((args, kwargs or {}))
            if isinstance(value, torch.Tensor)
        ]
        devices = {t.device for t in tensors if not (t.device.type == "cpu" and t.dim() == 0)}
        result = func(*args, **(kwargs or {}))
        outputs = [value for value in pytree.tree_leaves(result) if isinstance(value, torch.Tensor)]
        if len(devices | {t.device for t in outputs}) > 1:
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
