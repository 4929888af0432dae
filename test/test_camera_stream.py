"""CameraStream: which frame the flow starts from, and when the history restarts."""

import pytest

from neuflow_ros.node.camera_stream import CameraStream, ResetReason, StreamFrame

SECOND = 1_000_000_000


def frame(stamp_s: float, width: int = 128, height: int = 96, encoding: str = "rgb8"):
    return StreamFrame(int(stamp_s * SECOND), width, height, encoding, payload=stamp_s)


def test_first_frame_has_no_previous_and_is_not_a_reset():
    stream = CameraStream(max_frame_gap_s=1.0)
    step = stream.advance(frame(10.0))
    assert step.previous is None
    assert step.reset_reason is None
    assert sum(stream.reset_counts.values()) == 0


def test_consecutive_frames_pair_with_the_last_one():
    stream = CameraStream(max_frame_gap_s=1.0)
    stream.advance(frame(10.0))
    assert stream.advance(frame(10.1)).previous.payload == 10.0
    assert stream.advance(frame(10.2)).previous.payload == 10.1


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        (frame(10.1, width=160, height=120), ResetReason.SIZE_CHANGED),
        (frame(10.1, encoding="mono8"), ResetReason.ENCODING_CHANGED),
        (frame(9.0), ResetReason.TIME_BACKWARDS),
        (frame(10.0), ResetReason.DUPLICATE_STAMP),
        (frame(11.5), ResetReason.GAP_TOO_LARGE),
    ],
)
def test_breaks_reset_the_history_and_are_counted(second, reason):
    stream = CameraStream(max_frame_gap_s=1.0)
    stream.advance(frame(10.0))
    step = stream.advance(second)
    assert step.previous is None
    assert step.reset_reason is reason
    assert step.detail
    assert stream.reset_counts[reason] == 1
    assert sum(stream.reset_counts.values()) == 1
    # The frame that caused the reset starts the new history.
    follow_up = StreamFrame(second.stamp_ns + SECOND // 10, second.width, second.height,
                            second.encoding, payload="next")
    assert stream.advance(follow_up).previous is second


def test_gap_exactly_at_the_limit_still_pairs():
    stream = CameraStream(max_frame_gap_s=1.0)
    stream.advance(frame(10.0))
    assert stream.advance(frame(11.0)).previous is not None


def test_zero_max_gap_disables_the_gap_rule():
    stream = CameraStream(max_frame_gap_s=0.0)
    stream.advance(frame(10.0))
    assert stream.advance(frame(1000.0)).previous is not None


def test_unset_stamps_pair_instead_of_resetting():
    """Cameras without clocks leave every stamp at zero; they must still get flow."""
    stream = CameraStream(max_frame_gap_s=1.0)
    stream.advance(frame(0.0))
    assert stream.advance(frame(0.0)).previous is not None


def test_max_gap_can_change_at_run_time():
    stream = CameraStream(max_frame_gap_s=10.0)
    stream.advance(frame(10.0))
    stream.max_frame_gap_s = 0.5
    assert stream.advance(frame(11.0)).reset_reason is ResetReason.GAP_TOO_LARGE
    with pytest.raises(ValueError, match="max_frame_gap"):
        stream.max_frame_gap_s = -1.0


def test_clear_forgets_the_history_without_counting_a_reset():
    stream = CameraStream(max_frame_gap_s=1.0)
    stream.advance(frame(10.0))
    stream.clear()
    step = stream.advance(frame(10.1))
    assert step.previous is None
    assert sum(stream.reset_counts.values()) == 0
