"""Strict JPEG/PNG decoding and header sizes (neuflow_ros.imaging.compressed_image).

The payloads are encoded here with OpenCV and damaged by hand; the expected
pixels are the images the test encoded, never the decoder's own output.
"""

from __future__ import annotations

import array
import sys

import cv2
import numpy as np
import pytest
from damaged_images import damage_scan, png_bomb

from neuflow_ros.imaging.compressed_image import compressed_image_size, decode_compressed_image
from neuflow_ros.imaging.image_conversion import ImageFormatError
from neuflow_ros.imaging.synthetic_sequence import textured_image

WIDTH, HEIGHT = 320, 240


def encode(extension: str, image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(extension, np.ascontiguousarray(image))
    assert ok
    return encoded.tobytes()


@pytest.fixture(scope="module")
def bgr() -> np.ndarray:
    return np.ascontiguousarray(textured_image(WIDTH, HEIGHT)[:, :, ::-1])


def test_colour_and_mono_jpeg_decode_like_opencv_and_close_to_the_original(bgr):
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    cases = ((bgr, "jpeg", "bgr"), (gray, "mono8; jpeg compressed mono8", "mono"))
    for image, format, order in cases:
        data = encode(".jpg", image)
        decoded = decode_compressed_image(format, array.array("B", data))
        assert decoded.color_order == order and decoded.pixels.shape == image.shape
        reference = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert np.abs(decoded.pixels.astype(int) - reference.astype(int)).max() <= 1
        assert np.abs(decoded.pixels.astype(int) - image.astype(int)).mean() < 8


@pytest.mark.parametrize("mono", [False, True])
def test_corrupt_jpeg_scan_data_is_an_error_although_opencv_decodes_it(bgr, mono):
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if mono else bgr
    damaged = damage_scan(encode(".jpg", image))
    # What the node used before: a picture comes back, visibly wrong.
    smeared = cv2.imdecode(np.frombuffer(damaged, np.uint8), cv2.IMREAD_UNCHANGED)
    assert smeared is not None and np.abs(smeared.astype(int) - image.astype(int)).mean() > 10
    with pytest.raises(ImageFormatError, match="corrupt JPEG"):
        decode_compressed_image("jpeg", damaged)


def test_truncated_jpeg_is_an_error(bgr):
    data = encode(".jpg", bgr)
    with pytest.raises(ImageFormatError, match="corrupt JPEG"):
        decode_compressed_image("jpeg", data[: len(data) // 2])


def test_png_with_a_damaged_chunk_or_cut_short_is_an_error(bgr):
    data = encode(".png", bgr)
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF
    with pytest.raises(ImageFormatError, match="CRC mismatch in chunk 'IDAT'"):
        decode_compressed_image("png", bytes(damaged))
    with pytest.raises(ImageFormatError, match="truncated PNG"):
        decode_compressed_image("png", data[: len(data) // 2])


def test_sizes_come_from_the_headers_without_decoding(bgr):
    assert compressed_image_size("jpeg", encode(".jpg", bgr)) == (WIDTH, HEIGHT)
    assert compressed_image_size("png", encode(".png", bgr)) == (WIDTH, HEIGHT)
    bomb = png_bomb(10000, 10000)
    assert len(bomb) < 100_000
    assert compressed_image_size("png", bomb) == (10000, 10000)


def test_size_of_anything_but_jpeg_or_png_is_an_error(bgr):
    with pytest.raises(ImageFormatError, match="neither JPEG nor PNG"):
        compressed_image_size("bmp", encode(".bmp", bgr))
    with pytest.raises(ImageFormatError, match="unreadable JPEG header"):
        compressed_image_size("jpeg", b"\xff\xd8\xff" + bytes(20))
    with pytest.raises(ImageFormatError, match="PNG too short"):
        compressed_image_size("png", b"\x89PNG\r\n\x1a\n")


def test_without_simplejpeg_jpeg_is_a_clear_error_and_png_still_decodes(monkeypatch, bgr):
    monkeypatch.setitem(sys.modules, "simplejpeg", None)  # makes importing it fail
    with pytest.raises(ImageFormatError, match=r"pip install simplejpeg"):
        decode_compressed_image("jpeg", encode(".jpg", bgr))
    np.testing.assert_array_equal(decode_compressed_image("png", encode(".png", bgr)).pixels, bgr)
