"""Message fields to worker frames, with a reason for every rejected frame.

The subscription callbacks pass the plain fields of an Image or
CompressedImage here. A frame that cannot be used raises MalformedFrameError
with a short, stable ``reason`` (a diagnostics counter key and the key of the
warning throttle) and a detailed message for the log.

Sizes are checked against FrameLimits: too small for the engine that will
run (it would fail, or crash inside OpenCV, on the worker thread for every
frame) or too large to be worth the memory. The upper limit is checked before
anything is decoded or converted, from the message fields or the JPEG/PNG
header, so a huge frame never gets a pixel buffer of its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..imaging.compressed_image import compressed_image_size, decode_compressed_image
from ..imaging.image_conversion import (
    SUPPORTED_ENCODINGS,
    CameraImage,
    ImageBuffer,
    ImageFormatError,
    decode_raw_image,
)
from .flow_worker import CameraFrame

UNSUPPORTED_ENCODING = "unsupported_encoding"
ZERO_SIZE = "zero_size"
DATA_LENGTH = "data_length"
INVALID_LAYOUT = "invalid_layout"
DECODE_FAILED = "decode_failed"
TOO_SMALL = "too_small"
TOO_LARGE = "too_large"


@dataclass(frozen=True)
class FrameLimits:
    """The frame sizes the node accepts."""

    min_side: int
    """Smallest width and height the configured engine computes flow for."""
    max_pixels: int
    """Most pixels (width x height) per frame."""


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
    limits: FrameLimits,
) -> CameraFrame:
    """Decode the fields of a sensor_msgs/Image (no copy for plain 8-bit layouts)."""
    _check_not_too_large(width, height, encoding, limits)
    try:
        image = decode_raw_image(encoding, height, width, step, is_bigendian, data)
    except ImageFormatError as error:
        raise MalformedFrameError(
            _raw_reason(encoding, height, width, step, memoryview(data).nbytes),
            str(error),
        ) from error
    return _frame(camera, stamp_ns, frame_id, encoding, image, limits)


def compressed_frame(
    camera: str,
    stamp_ns: int,
    frame_id: str,
    format: str,
    data: ImageBuffer,
    limits: FrameLimits,
) -> CameraFrame:
    """Decode the fields of a sensor_msgs/CompressedImage (JPEG or PNG), sizes checked first."""
    try:
        width, height = compressed_image_size(format, data)
    except ImageFormatError as error:
        raise MalformedFrameError(DECODE_FAILED, str(error)) from error
    _check_not_too_large(width, height, format, limits)
    _check_not_too_small(width, height, format, limits)
    try:
        image = decode_compressed_image(format, data)
    except ImageFormatError as error:
        raise MalformedFrameError(DECODE_FAILED, str(error)) from error
    return _frame(camera, stamp_ns, frame_id, format, image, limits)


def _check_not_too_large(width: int, height: int, encoding: str, limits: FrameLimits) -> None:
    if width > 0 and height > 0 and width * height > limits.max_pixels:
        raise MalformedFrameError(
            TOO_LARGE,
            f"{width}x{height} {encoding} image has {width * height} pixels, more than "
            f"max_input_pixels = {limits.max_pixels}",
        )


def _check_not_too_small(width: int, height: int, encoding: str, limits: FrameLimits) -> None:
    if min(width, height) < limits.min_side:
        raise MalformedFrameError(
            TOO_SMALL,
            f"{width}x{height} {encoding} image is too small for the flow engine: both sides "
            f"must be at least {limits.min_side} pixels",
        )


def _frame(
    camera: str,
    stamp_ns: int,
    frame_id: str,
    encoding: str,
    image: CameraImage,
    limits: FrameLimits,
) -> CameraFrame:
    height, width = image.pixels.shape[:2]
    _check_not_too_small(width, height, encoding, limits)
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
