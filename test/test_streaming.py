"""Streaming mode: each frame goes through the backbone once, and the flow does not change.

The reference for every streamed result is the same engine configuration
with streaming off, which encodes both frames of every pair.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from neuflow_weights import write_official_checkpoint

from neuflow_ros.flow.engine import EngineConfig, FlowEngine, FramePair
from neuflow_ros.flow.stream_encodings import StreamEncodings
from neuflow_ros.imaging.synthetic_sequence import Motion, SyntheticSequence
from neuflow_ros.models import EncodedImages

TOLERANCE_PX = 1e-4
"""Batch composition changes which kernels run (one image vs two), nothing more."""
VERSIONS = ("neuflow_v1", "neuflow_v2")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("streaming_weights")
    return {
        version: str(write_official_checkpoint(folder / f"{version}.pth", version[-2:], seed))
        for seed, version in enumerate(VERSIONS, start=3)
    }


def make_engine(checkpoint: str, version: str, streaming: bool) -> FlowEngine:
    return FlowEngine(
        EngineConfig(backend=version, checkpoint=checkpoint, device="cpu", streaming=streaming)
    )


def moving_sequence(width: int, height: int, count: int, seed: int) -> list[np.ndarray]:
    sequence = SyntheticSequence(width, height, Motion(1.25, -0.5, 0.0, 1.0), seed=seed)
    return [sequence.frame(index) for index in range(count)]


def camera_sequence() -> list[tuple[np.ndarray, np.ndarray]]:
    """Consecutive pairs as a camera produces them, with two resets.

    A resolution change and then a restart at the old size (what a backwards
    time jump looks like to the engine: the first frame after it was never
    the second frame of a pair).
    """
    pairs = []
    for width, height, seed in ((96, 64, 1), (64, 48, 2), (96, 64, 3)):
        frames = moving_sequence(width, height, 3, seed)
        pairs += list(itertools.pairwise(frames))
    return pairs


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("backward", [False, True])
def test_streamed_flow_equals_encoding_both_frames(checkpoints, version, backward):
    streamed = make_engine(checkpoints[version], version, streaming=True)
    reference = make_engine(checkpoints[version], version, streaming=False)
    for previous, current in camera_sequence():
        (got,) = streamed.compute(
            [FramePair(previous, current, "rgb", stream="cam")], backward=backward
        )
        (expected,) = reference.compute(
            [FramePair(previous, current, "rgb", stream="cam")], backward=backward
        )
        np.testing.assert_allclose(got.forward, expected.forward, atol=TOLERANCE_PX)
        if backward:
            np.testing.assert_allclose(got.backward, expected.backward, atol=TOLERANCE_PX)
    pairs = len(camera_sequence())
    assert reference.encoded_frames == 2 * pairs
    # Three stream starts need both frames; every other pair only its new one.
    assert streamed.encoded_frames == pairs + 3


@pytest.mark.parametrize("version", VERSIONS)
def test_pipelined_submissions_equal_one_call_at_a_time(checkpoints, version):
    """The next pair is submitted before the previous result is taken (the worker's
    overlap under backlog), and results are taken in either order."""
    pipelined = make_engine(checkpoints[version], version, streaming=True)
    reference = make_engine(checkpoints[version], version, streaming=False)
    sequence = camera_sequence()
    pending = [
        pipelined.submit([FramePair(previous, current, "rgb", stream="cam")], backward=True)
        for previous, current in sequence
    ]
    for index in (*range(1, len(sequence), 2), *range(0, len(sequence), 2)):
        previous, current = sequence[index]
        (got,) = pending[index].result()
        (expected,) = reference.compute([FramePair(previous, current, "rgb")], backward=True)
        np.testing.assert_allclose(got.forward, expected.forward, atol=TOLERANCE_PX)
        np.testing.assert_allclose(got.backward, expected.backward, atol=TOLERANCE_PX)
        assert pending[index].result() is pending[index].result()
    assert pipelined.encoded_frames == len(sequence) + 3
    assert not pipelined.submits_asynchronously  # the CPU computes at submit


def test_streams_of_several_cameras_in_one_batch(checkpoints):
    streamed = make_engine(checkpoints["neuflow_v2"], "neuflow_v2", streaming=True)
    reference = make_engine(checkpoints["neuflow_v2"], "neuflow_v2", streaming=False)
    left = moving_sequence(96, 64, 3, seed=4)
    right = moving_sequence(96, 64, 3, seed=5)
    for index in range(1, 3):
        pairs = [
            FramePair(left[index - 1], left[index], "rgb", stream="left"),
            FramePair(right[index - 1], right[index], "rgb", stream="right"),
        ]
        for got, expected in zip(
            streamed.compute(pairs, backward=True),
            reference.compute(pairs, backward=True),
            strict=True,
        ):
            np.testing.assert_allclose(got.forward, expected.forward, atol=TOLERANCE_PX)
            np.testing.assert_allclose(got.backward, expected.backward, atol=TOLERANCE_PX)
    assert streamed.encoded_frames == 4 + 2


def test_an_equal_but_different_frame_object_is_encoded_afresh(checkpoints):
    """Reuse is keyed on the very array handed over: a copy may have been edited."""
    engine = make_engine(checkpoints["neuflow_v1"], "neuflow_v1", streaming=True)
    frame0, frame1, frame2 = moving_sequence(128, 96, 3, seed=6)
    engine.compute([FramePair(frame0, frame1, "rgb", stream="cam")])
    edited = frame1.copy()
    edited[:, :64] = 0
    (got,) = engine.compute([FramePair(edited, frame2, "rgb", stream="cam")])
    (expected,) = make_engine(checkpoints["neuflow_v1"], "neuflow_v1", streaming=False).compute(
        [FramePair(edited, frame2, "rgb")]
    )
    np.testing.assert_allclose(got.forward, expected.forward, atol=TOLERANCE_PX)
    assert engine.encoded_frames == 4


def test_pairs_without_a_stream_are_never_reused(checkpoints):
    engine = make_engine(checkpoints["neuflow_v1"], "neuflow_v1", streaming=True)
    frames = moving_sequence(96, 64, 3, seed=7)
    engine.compute([FramePair(frames[0], frames[1], "rgb")])
    engine.compute([FramePair(frames[1], frames[2], "rgb")])
    assert engine.encoded_frames == 4


def _encoding(value: float) -> EncodedImages:
    return EncodedImages(*(torch.full((1, 2, 2, 2), value) for _ in range(3)))


def test_stream_memory_matches_object_stream_and_signature():
    memory = StreamEncodings(max_streams=2)
    frame = np.zeros((4, 4), np.uint8)
    memory.remember("a", frame, ("128x96", "rgb"), _encoding(1.0))
    assert memory.lookup("a", frame, ("128x96", "rgb")) is not None
    assert memory.lookup("a", frame.copy(), ("128x96", "rgb")) is None
    assert memory.lookup("a", frame, ("128x96", "bgr")) is None
    assert memory.lookup("b", frame, ("128x96", "rgb")) is None
    assert memory.lookup(None, frame, ("128x96", "rgb")) is None
    memory.remember(None, frame, ("128x96", "rgb"), _encoding(2.0))
    assert len(memory) == 1


def test_stream_memory_is_bounded():
    memory = StreamEncodings(max_streams=2)
    frames = [np.zeros((4, 4), np.uint8) for _ in range(3)]
    for name, frame in zip("abc", frames, strict=True):
        memory.remember(name, frame, (), _encoding(0.0))
    assert len(memory) == 2
    assert memory.lookup("a", frames[0], ()) is None
    assert memory.lookup("c", frames[2], ()) is not None
