"""frame_intake: message fields to worker frames, and a stable reason for each rejection."""

from array import array

import cv2
import numpy as np
import pytest

from neuflow_ros.imaging.compressed_image import decode_compressed_image
from neuflow_ros.imaging.image_conversion import ImageFormatError
from neuflow_ros.node.frame_intake import (
    DATA_LENGTH,
    DECODE_FAILED,
    INVALID_LAYOUT,
    TOO_LARGE,
    TOO_SMALL,
    UNSUPPORTED_ENCODING,
    ZERO_SIZE,
    FrameLimits,
    MalformedFrameError,
    compressed_frame,
    raw_frame,
)

LIMITS = FrameLimits(min_side=8, max_pixels=10_000)


def _raw(encoding="rgb8", height=24, width=32, step=None, data=None, is_bigendian=0,
         limits=LIMITS):
    step = width * 3 if step is None else step
    data = array("B", bytes(height * step)) if data is None else data
    return raw_frame("front", 5_000_000_123, "cam", encoding, height, width, step, is_bigendian,
                     data, limits)


def test_raw_frame_keeps_identity_stamp_and_pixels_without_copy():
    data = array("B", np.arange(24 * 96, dtype=np.uint64).astype(np.uint8).tobytes())
    frame = _raw(data=data)
    assert (frame.camera, frame.stamp_ns, frame.frame_id, frame.encoding) == (
        "front", 5_000_000_123, "cam", "rgb8")
    assert (frame.width, frame.height, frame.color_order) == (32, 24, "rgb")
    assert frame.pixels[0, 1, 0] == 3  # row 0, pixel 1, red = byte 3
    data[3] = 200
    assert frame.pixels[0, 1, 0] == 200, "rgb8 frames are views of the message buffer"


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"encoding": "rgb42"}, UNSUPPORTED_ENCODING),
    ({"height": 0, "width": 0, "step": 0, "data": array("B")}, ZERO_SIZE),
    ({"data": array("B", bytes(24 * 96 - 1))}, DATA_LENGTH),
    ({"step": 64, "data": array("B", bytes(24 * 64))}, INVALID_LAYOUT),
    ({"height": 4, "width": 4, "step": 12, "data": array("B", bytes(48))}, TOO_SMALL),
    ({"height": 31, "width": 400, "limits": FrameLimits(32, 10**6)}, TOO_SMALL),
    # Checked on the fields alone: the data is far too short, the size decides.
    ({"height": 101, "width": 100, "data": array("B", bytes(3))}, TOO_LARGE),
    ({"height": 100, "width": 101, "encoding": "bayer_rggb8", "step": 101}, TOO_LARGE),
])
def test_rejections_carry_a_stable_reason_and_the_offending_values(kwargs, reason):
    with pytest.raises(MalformedFrameError) as raised:
        _raw(**kwargs)
    assert raised.value.reason == reason
    assert str(raised.value)


def test_compressed_frames_decode_and_garbage_is_rejected():
    ok, png = cv2.imencode(".png", np.full((16, 20, 3), 7, np.uint8))
    assert ok
    frame = compressed_frame("", 1, "cam", "png", array("B", png.tobytes()), LIMITS)
    assert (frame.width, frame.height, frame.encoding) == (20, 16, "png")
    with pytest.raises(MalformedFrameError) as raised:
        compressed_frame("", 1, "cam", "jpeg", array("B", b"not a jpeg"), LIMITS)
    assert raised.value.reason == DECODE_FAILED


@pytest.mark.parametrize(("size", "reason"), [((101, 100), TOO_LARGE), ((40, 7), TOO_SMALL)])
def test_compressed_sizes_are_checked_before_decoding(size, reason):
    ok, jpeg = cv2.imencode(".jpg", np.full((size[1], size[0], 3), 7, np.uint8))
    assert ok
    truncated = jpeg.tobytes()[:-2]  # no end marker: fails to decode, the size check comes first
    with pytest.raises(ImageFormatError):
        decode_compressed_image("jpeg", truncated)
    with pytest.raises(MalformedFrameError) as raised:
        compressed_frame("", 1, "cam", "jpeg", truncated, LIMITS)
    assert raised.value.reason == reason
    assert f"{size[0]}x{size[1]}" in str(raised.value)
