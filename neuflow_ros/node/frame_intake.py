"""Message fields to worker frames, with a reason for every rejected frame.

The subscription callbacks pass the plain fields of an Image or
CompressedImage here. A frame that cannot be used raises MalformedFrameError
with a short, stable ``reason`` (a diagnostics counter key and the key of the
warning throttle) and a detailed message for the log.
"""

from __future__ import annotations

import time

from ..flow.flow_types import MIN_FRAME_SIDE
from ..imaging.image_conversion import (
    SUPPORTED_ENCODINGS,
    CameraImage,
    ImageBuffer,
    ImageFormatError,
    decode_compressed_image,
    decode_raw_image,
)
from .flow_worker import CameraFrame

UNSUPPORTED_ENCODING = "unsupported_encoding"
ZERO_SIZE = "zero_size"
DATA_LENGTH = "data_length"
INVALID_LAYOUT = "invalid_layout"
DECODE_FAILED = "decode_failed"
TOO_SMALL = "too_small"


class MalformedFrameError(ValueError):
    """A camera frame the node cannot use; ``reason`` is one of the constants above."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def raw_frame(
    camera: str,
    stamp_ns: int,
    frame_id: str,
    encoding: str,
    height: int,
    width: int,
    step: int,
    is_bigendian: bool | int,
    data: ImageBuffer,
) -> CameraFrame:
    """Decode the fields of a sensor_msgs/Image (no copy for plain 8-bit layouts)."""
    try:
        image = decode_raw_image(encoding, height, width, step, is_bigendian, data)
    except ImageFormatError as error:
        raise MalformedFrameError(
            _raw_reason(encoding, height, width, step, memoryview(data).nbytes),
            str(error),
        ) from error
    return _frame(camera, stamp_ns, frame_id, encoding, image)


def compressed_frame(
    camera: str, stamp_ns: int, frame_id: str, format: str, data: ImageBuffer
) -> CameraFrame:
    """Decode the fields of a sensor_msgs/CompressedImage (JPEG, PNG, ...)."""
    try:
        image = decode_compressed_image(format, data)
    except ImageFormatError as error:
        raise MalformedFrameError(DECODE_FAILED, str(error)) from error
    return _frame(camera, stamp_ns, frame_id, format, image)


def _frame(
    camera: str, stamp_ns: int, frame_id: str, encoding: str, image: CameraImage
) -> CameraFrame:
    height, width = image.pixels.shape[:2]
    if min(height, width) < MIN_FRAME_SIDE:
        raise MalformedFrameError(
            TOO_SMALL,
            f"{width}x{height} {encoding} image is too small for optical flow: both sides "
            f"must be at least {MIN_FRAME_SIDE} pixels",
        )
    return CameraFrame(
        camera=camera,
        stamp_ns=stamp_ns,
        frame_id=frame_id,
        encoding=encoding,
        pixels=image.pixels,
        color_order=image.color_order,
        handed_over_s=time.monotonic(),
    )


def _raw_reason(encoding: str, height: int, width: int, step: int, data_length: int) -> str:
    if encoding not in SUPPORTED_ENCODINGS:
        return UNSUPPORTED_ENCODING
    if height <= 0 or width <= 0:
        return ZERO_SIZE
    if data_length != height * step:
        return DATA_LENGTH
    return INVALID_LAYOUT
