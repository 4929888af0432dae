"""Camera payloads to numpy arrays and back, without ROS.

cv_bridge has no ROS 2 wheel outside a ROS distro, so the node hands the raw
fields of a ``sensor_msgs/Image`` to these functions instead (and those of a
``CompressedImage`` to compressed_image). Keeping this module free of ROS
imports lets it be tested and reused on machines without ROS.

Two choices worth knowing:

* 16-bit images (``mono16``, ``16UC1``, 16-bit PNG) are reduced to 8 bit by
  keeping the top 8 bits. A fixed scale keeps the brightness of a scene the
  same from frame to frame, which optical flow relies on; normalising each
  frame by its own range would make brightness jump whenever the range does.
* ``8UC3`` carries no channel order, so it is read as BGR, the convention of
  OpenCV, which is what nearly every publisher of ``8UC3`` uses.

Layouts that need no arithmetic (mono8, 8UC1, rgb8, bgr8, 8UC3, rgba8, bgra8)
come back as views of the message buffer, padded rows included, so a frame is
never copied on the way in. Such views are read-only when the buffer is
(``bytes``) and need not be contiguous: copy before writing into them.
"""

from __future__ import annotations

from array import array
from typing import NamedTuple

import cv2
import numpy as np

ImageBuffer = bytes | bytearray | memoryview | array | np.ndarray


class ImageFormatError(ValueError):
    """A payload that cannot be turned into pixels; the message names the culprit values."""


class CameraImage(NamedTuple):
    """Decoded pixels plus the channel order a consumer needs to interpret them."""

    pixels: np.ndarray
    color_order: str


class _RawLayout(NamedTuple):
    bytes_per_pixel: int
    color_order: str


_VIEW_LAYOUTS: dict[str, _RawLayout] = {
    "mono8": _RawLayout(1, "mono"),
    "8UC1": _RawLayout(1, "mono"),
    "rgb8": _RawLayout(3, "rgb"),
    "bgr8": _RawLayout(3, "bgr"),
    "8UC3": _RawLayout(3, "bgr"),
    "rgba8": _RawLayout(4, "rgb"),
    "bgra8": _RawLayout(4, "bgr"),
}

_SIXTEEN_BIT_ENCODINGS = frozenset({"mono16", "16UC1"})

_YUV422_CONVERSIONS: dict[str, int] = {
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
    "yuyv": cv2.COLOR_YUV2RGB_YUY2,
}

# OpenCV names a Bayer pattern after the 2x2 block that starts at the second
# row and second column, ROS after the one at the origin, so the names differ
# by a diagonal shift. The old OpenCV names are used because the newer
# RGGB-style aliases are missing from the OpenCV shipped with ROS Humble.
_BAYER_CONVERSIONS: dict[str, int] = {
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}

SUPPORTED_ENCODINGS: frozenset[str] = frozenset(
    set(_VIEW_LAYOUTS) | _SIXTEEN_BIT_ENCODINGS | set(_YUV422_CONVERSIONS) | set(_BAYER_CONVERSIONS)
)


def _bytes_per_pixel(encoding: str) -> int:
    if encoding in _VIEW_LAYOUTS:
        return _VIEW_LAYOUTS[encoding].bytes_per_pixel
    if encoding in _SIXTEEN_BIT_ENCODINGS or encoding in _YUV422_CONVERSIONS:
        return 2
    return 1


def as_flat_bytes(data: ImageBuffer) -> np.ndarray:
    """View any buffer rclpy may hand over as flat uint8 without copying it."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageFormatError(f"image data array must have dtype uint8, got {data.dtype}")
        return data.reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, BufferError) as error:
        raise ImageFormatError(
            f"image data must be a contiguous bytes-like object, got {type(data).__name__}: {error}"
        ) from error


def _padded_rows(
    encoding: str, height: int, width: int, step: int, data: ImageBuffer
) -> np.ndarray:
    """Check the geometry and return the pixel bytes of each row as a (height, width*bpp) view."""
    if encoding not in SUPPORTED_ENCODINGS:
        supported = ", ".join(sorted(SUPPORTED_ENCODINGS))
        raise ImageFormatError(f"unsupported encoding '{encoding}'; supported: {supported}")
    if height <= 0 or width <= 0:
        raise ImageFormatError(
            f"image size must be positive, got height={height} width={width} ({encoding})"
        )
    row_bytes = width * _bytes_per_pixel(encoding)
    if step < row_bytes:
        raise ImageFormatError(
            f"step {step} is smaller than width*bytes_per_pixel = {width}*"
            f"{_bytes_per_pixel(encoding)} = {row_bytes} ({encoding})"
        )
    flat = as_flat_bytes(data)
    if flat.size != height * step:
        raise ImageFormatError(
            f"data length mismatch for {encoding} {width}x{height} with step {step}: "
            f"expected height*step = {height * step} bytes, got {flat.size}"
        )
    return flat.reshape(height, step)[:, :row_bytes]


def decode_raw_image(
    encoding: str,
    height: int,
    width: int,
    step: int,
    is_bigendian: bool | int,
    data: ImageBuffer,
) -> CameraImage:
    """Turn the fields of a ``sensor_msgs/Image`` into 8-bit pixels.

    YUV 4:2:2 and Bayer images become RGB; everything else keeps its channel
    order, reported in ``color_order``, so no frame is reordered needlessly.
    """
    if encoding in _YUV422_CONVERSIONS and width % 2:
        raise ImageFormatError(
            f"{encoding} packs two pixels per 4 bytes, so width must be even, got {width}"
        )
    rows = _padded_rows(encoding, height, width, step, data)
    if encoding in _VIEW_LAYOUTS:
        layout = _VIEW_LAYOUTS[encoding]
        if layout.bytes_per_pixel == 1:
            return CameraImage(rows, layout.color_order)
        pixels = rows.reshape(height, width, layout.bytes_per_pixel)
        return CameraImage(pixels[:, :, :3], layout.color_order)
    if encoding in _SIXTEEN_BIT_ENCODINGS:
        # The top 8 bits of a 16-bit sample are its most significant byte.
        high_bytes = rows[:, 0::2] if is_bigendian else rows[:, 1::2]
        return CameraImage(np.ascontiguousarray(high_bytes), "mono")
    if encoding in _YUV422_CONVERSIONS:
        packed = rows.reshape(height, width, 2)
        return CameraImage(cv2.cvtColor(packed, _YUV422_CONVERSIONS[encoding]), "rgb")
    return CameraImage(cv2.cvtColor(rows, _BAYER_CONVERSIONS[encoding]), "rgb")


def flow_to_image_payload(flow: np.ndarray) -> tuple[int, int, str, int, memoryview]:
    """Pack an HxWx2 flow field as the fields of a ``32FC2`` Image (little-endian, is_bigendian=0).

    32FC2 is what flow consumers in the ROS ecosystem (e.g. OpenCV-based
    tools) expect: two float channels (dx, dy) in pixels. The data is a byte
    view of the (contiguous) flow, not a copy: a 640x480 flow is 2.4 MB, and
    the message needs one copy of it anyway.
    """
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[0] == 0 or flow.shape[1] == 0:
        raise ImageFormatError(f"flow must have shape HxWx2 with H, W > 0, got {flow.shape}")
    if not np.issubdtype(flow.dtype, np.floating):
        raise ImageFormatError(f"flow must be floating point, got dtype {flow.dtype}")
    height, width = flow.shape[:2]
    little_endian = np.ascontiguousarray(flow, dtype="<f4")
    return height, width, "32FC2", width * 8, memoryview(little_endian).cast("B")


def scalar_to_image_payload(values: np.ndarray) -> tuple[int, int, str, int, memoryview]:
    """Pack an HxW float field (e.g. a disparity map) as the fields of a ``32FC1`` Image."""
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise ImageFormatError(f"values must have shape HxW with H, W > 0, got {values.shape}")
    height, width = values.shape
    little_endian = np.ascontiguousarray(values, dtype="<f4")
    return height, width, "32FC1", width * 4, memoryview(little_endian).cast("B")


def rgb_to_image_payload(rgb: np.ndarray) -> tuple[int, int, str, int, memoryview]:
    """Pack an HxWx3 uint8 RGB image (e.g. a flow visualisation) as the fields of an rgb8 Image.

    Like flow_to_image_payload, the data is a byte view, copied only if rgb is not contiguous.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageFormatError(f"rgb image must have shape HxWx3 with H, W > 0, got {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ImageFormatError(f"rgb image must have dtype uint8, got {rgb.dtype}")
    height, width = rgb.shape[:2]
    return height, width, "rgb8", width * 3, memoryview(np.ascontiguousarray(rgb)).cast("B")


_TO_GRAY = {"rgb": cv2.COLOR_RGB2GRAY, "bgr": cv2.COLOR_BGR2GRAY}


def to_gray(pixels: np.ndarray, color_order: str) -> np.ndarray:
    """Contiguous 2-D uint8 gray from a decoded frame: DIS and corner detection need it."""
    if color_order == "mono":
        return np.ascontiguousarray(pixels if pixels.ndim == 2 else pixels[:, :, 0])
    return cv2.cvtColor(pixels, _TO_GRAY[color_order])
