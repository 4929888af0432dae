"""JPEG and PNG payloads of a ``sensor_msgs/CompressedImage`` to 8-bit pixels, strictly.

Two things a camera link gets wrong are handled here rather than hoped away:

* Damaged data. libjpeg treats corrupt entropy-coded data as a warning and
  returns an image anyway, so ``cv2.imdecode`` hands out a frame with smeared
  blocks and optical flow computes confident nonsense on it. JPEG is therefore
  decoded with simplejpeg (libjpeg-turbo) in strict mode, where every such
  warning is an error; PNG chunks are checked against their CRCs before
  libpng sees them. (Damage that still forms valid Huffman codes cannot be
  detected by any decoder: JPEG carries no checksum.)
* Size. A 95 KB PNG can decode to 10000x10000 pixels. Both formats state their
  size in the header, so ``compressed_image_size`` reads it and a caller can
  refuse the frame before a single pixel buffer exists.

Other formats (BMP, TIFF, ... in image folders) are decoded by OpenCV as before.
simplejpeg is imported on first use, so raw cameras and PNG need no more than
OpenCV; the node refuses transport 'compressed' at start-up without it.
"""

from __future__ import annotations

import importlib.util
import struct
import zlib
from types import ModuleType

import cv2
import numpy as np

from neuflow_ros.imaging.image_conversion import (
    CameraImage,
    ImageBuffer,
    ImageFormatError,
    as_flat_bytes,
)

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_CHUNK_HEADER = struct.Struct(">I4s")
_PNG_CRC = struct.Struct(">I")
_PNG_IHDR_SIZE = struct.Struct(">II")


def jpeg_decoder_available() -> bool:
    """True when simplejpeg, the strict JPEG decoder, can be imported."""
    return importlib.util.find_spec("simplejpeg") is not None


def _simplejpeg() -> ModuleType:
    try:
        return importlib.import_module("simplejpeg")
    except ImportError as error:
        raise ImageFormatError(
            "decoding JPEG strictly needs simplejpeg: pip install simplejpeg==1.9.0"
        ) from error


def compressed_image_size(format: str, data: ImageBuffer) -> tuple[int, int]:
    """(width, height) from the JPEG or PNG header, without decoding any pixels.

    Raises ImageFormatError for anything that is neither (the compressed image
    transport carries only these two) or whose header cannot be read.
    """
    encoded = _encoded_bytes(format, data)
    if encoded.startswith(_JPEG_MAGIC):
        height, width = _jpeg_header(format, encoded)[:2]
        return width, height
    if encoded.startswith(_PNG_MAGIC):
        return _png_size(format, encoded)
    raise ImageFormatError(
        f"compressed image (format '{format}', {len(encoded)} bytes) is neither JPEG nor PNG"
    )


def decode_compressed_image(format: str, data: ImageBuffer) -> CameraImage:
    """Decode the fields of a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ...) to 8-bit pixels.

    Corrupt JPEG or PNG data raises ImageFormatError instead of yielding a damaged image.
    """
    encoded = _encoded_bytes(format, data)
    if encoded.startswith(_JPEG_MAGIC):
        return _decode_jpeg(format, encoded)
    if encoded.startswith(_PNG_MAGIC):
        _check_png_chunks(format, encoded)
    return _decode_with_opencv(format, encoded)


def _encoded_bytes(format: str, data: ImageBuffer) -> bytes:
    if "compresseddepth" in format.lower():
        raise ImageFormatError(
            f"compressedDepth images are not supported (format '{format}'): "
            "subscribe to the raw or 'compressed' colour/mono stream instead"
        )
    encoded = as_flat_bytes(data).tobytes() if not isinstance(data, bytes) else data
    if not encoded:
        raise ImageFormatError(f"compressed image data is empty (format '{format}')")
    return encoded


def _channel_order_of_compressed(format: str) -> str:
    """Read 'rgb' or 'bgr' from the part of the format after 'compressed'.

    image_transport writes e.g. 'rgb8; jpeg compressed bgr8': the token after
    'compressed' is the order the codec stored, hence the order a decoder
    asked for BGR returns. Plain 'jpeg'/'png' come from OpenCV-based
    publishers: BGR.
    """
    _, marker, stored = format.partition("compressed")
    if marker and stored.strip().lower().startswith("rgb"):
        return "rgb"
    return "bgr"


def _jpeg_header(format: str, encoded: bytes) -> tuple[int, int, str]:
    """(height, width, colorspace) as libjpeg-turbo reads them."""
    try:
        height, width, colorspace, _ = _simplejpeg().decode_jpeg_header(encoded)
    except ValueError as error:
        raise ImageFormatError(
            f"unreadable JPEG header (format '{format}', {len(encoded)} bytes): {error}"
        ) from error
    return height, width, colorspace


def _decode_jpeg(format: str, encoded: bytes) -> CameraImage:
    colorspace = _jpeg_header(format, encoded)[2]
    mono = colorspace == "Gray"
    try:
        pixels = _simplejpeg().decode_jpeg(
            encoded, colorspace="GRAY" if mono else "BGR", strict=True
        )
    except ValueError as error:
        raise ImageFormatError(
            f"corrupt JPEG (format '{format}', {len(encoded)} bytes): {error}"
        ) from error
    if mono:
        return CameraImage(pixels[:, :, 0], "mono")
    return CameraImage(pixels, _channel_order_of_compressed(format))


def _png_size(format: str, encoded: bytes) -> tuple[int, int]:
    header_end = len(_PNG_MAGIC) + _PNG_CHUNK_HEADER.size
    if len(encoded) < header_end + _PNG_IHDR_SIZE.size:
        raise ImageFormatError(f"PNG too short for its header (format '{format}')")
    _, chunk_type = _PNG_CHUNK_HEADER.unpack_from(encoded, len(_PNG_MAGIC))
    if chunk_type != b"IHDR":
        raise ImageFormatError(f"PNG does not start with IHDR (format '{format}')")
    width, height = _PNG_IHDR_SIZE.unpack_from(encoded, header_end)
    return width, height


def _check_png_chunks(format: str, encoded: bytes) -> None:
    """Every chunk's CRC must match and the file must end with IEND, as the PNG spec demands."""
    offset = len(_PNG_MAGIC)
    while offset + _PNG_CHUNK_HEADER.size <= len(encoded):
        length, chunk_type = _PNG_CHUNK_HEADER.unpack_from(encoded, offset)
        body_start = offset + _PNG_CHUNK_HEADER.size
        crc_start = body_start + length
        if crc_start + _PNG_CRC.size > len(encoded):
            break
        (crc,) = _PNG_CRC.unpack_from(encoded, crc_start)
        if zlib.crc32(encoded[offset + 4 : crc_start]) != crc:
            name = chunk_type.decode("latin-1")
            raise ImageFormatError(
                f"corrupt PNG (format '{format}'): CRC mismatch in chunk {name!r} at byte {offset}"
            )
        if chunk_type == b"IEND":
            return
        offset = crc_start + _PNG_CRC.size
    raise ImageFormatError(
        f"truncated PNG (format '{format}', {len(encoded)} bytes): no IEND chunk"
    )


def _decode_with_opencv(format: str, encoded: bytes) -> CameraImage:
    try:
        decoded = cv2.imdecode(np.frombuffer(encoded, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        raise ImageFormatError(
            f"could not decode compressed image (format '{format}', {len(encoded)} bytes): "
            f"{error}"
        ) from error
    if decoded is None:
        raise ImageFormatError(
            f"could not decode compressed image (format '{format}', {len(encoded)} bytes)"
        )
    if decoded.dtype == np.uint16:
        decoded = (decoded >> 8).astype(np.uint8)
    elif decoded.dtype != np.uint8:
        raise ImageFormatError(
            f"decoded image has unsupported depth {decoded.dtype} (format '{format}')"
        )
    if decoded.ndim == 2:
        return CameraImage(decoded, "mono")
    channels = decoded.shape[2]
    if channels == 1:
        return CameraImage(decoded[:, :, 0], "mono")
    if channels in (3, 4):
        return CameraImage(decoded[:, :, :3], _channel_order_of_compressed(format))
    raise ImageFormatError(
        f"decoded image has unsupported channel count {channels} (format '{format}')"
    )
