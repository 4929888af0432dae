"""Tests for neuflow_ros.imaging.image_conversion.

Every payload is built here from a known image with formulas written for the
test (byte packing, BT.601 YUV, Bayer mosaics), so the expected pixels never
come from the code under test.
"""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest

from neuflow_ros.imaging.compressed_image import decode_compressed_image
from neuflow_ros.imaging.image_conversion import (
    SUPPORTED_ENCODINGS,
    CameraImage,
    ImageFormatError,
    decode_raw_image,
    flow_to_image_payload,
    rgb_to_image_payload,
)

HEIGHT, WIDTH = 24, 32
PADDING_BYTE = 0xAB


@pytest.fixture
def random_rgb() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)


@pytest.fixture
def smooth_rgb() -> np.ndarray:
    """Linear ramps with a different direction per channel.

    Bilinear demosaicing reproduces linear ramps exactly away from the border,
    and swapping or shifting channels produces large errors, so a wrong Bayer
    pattern cannot pass.
    """
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    red = 20 + 6 * cols
    green = 30 + 5 * rows + 2 * cols
    blue = 230 - 5 * cols - 3 * rows
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def pack_rows(pixel_rows: np.ndarray, step: int) -> bytes:
    """Serialise an HxN byte matrix as rows of `step` bytes, padding with a marker byte."""
    height = pixel_rows.shape[0]
    flat_rows = pixel_rows.reshape(height, -1)
    padding = bytes([PADDING_BYTE]) * (step - flat_rows.shape[1])
    return b"".join(row.tobytes() + padding for row in flat_rows)


# --- layouts decoded without arithmetic ------------------------------------------------------


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
@pytest.mark.parametrize("padding", [0, 5])
def test_mono8_is_exact_zero_copy_view(encoding: str, padding: int, random_rgb: np.ndarray) -> None:
    gray = random_rgb[:, :, 0].copy()
    step = WIDTH + padding
    buffer = np.frombuffer(pack_rows(gray, step), dtype=np.uint8).copy()

    image = decode_raw_image(encoding, HEIGHT, WIDTH, step, False, buffer)

    assert image.color_order == "mono"
    assert image.pixels.shape == (HEIGHT, WIDTH)
    assert image.pixels.dtype == np.uint8
    np.testing.assert_array_equal(image.pixels, gray)
    assert np.shares_memory(image.pixels, buffer)


@pytest.mark.parametrize(
    ("encoding", "order", "channels_from_rgb"),
    [
        ("rgb8", "rgb", [0, 1, 2]),
        ("bgr8", "bgr", [2, 1, 0]),
        ("8UC3", "bgr", [2, 1, 0]),
    ],
)
@pytest.mark.parametrize("padding", [0, 7])
def test_three_channel_layouts_are_exact_zero_copy_views(
    encoding: str, order: str, channels_from_rgb: list[int], padding: int, random_rgb: np.ndarray
) -> None:
    stored = random_rgb[:, :, channels_from_rgb]
    step = WIDTH * 3 + padding
    buffer = np.frombuffer(pack_rows(stored, step), dtype=np.uint8).copy()

    image = decode_raw_image(encoding, HEIGHT, WIDTH, step, 0, buffer)

    assert image.color_order == order
    assert image.pixels.shape == (HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(image.pixels, stored)
    assert np.shares_memory(image.pixels, buffer)


def test_view_of_bytearray_sees_later_writes_to_the_message_buffer(random_rgb: np.ndarray) -> None:
    step = WIDTH * 3 + 4
    message_data = bytearray(pack_rows(random_rgb, step))

    image = decode_raw_image("rgb8", HEIGHT, WIDTH, step, 0, message_data)
    message_data[step + 3] = (int(random_rgb[1, 1, 0]) + 1) % 256

    assert image.pixels[1, 1, 0] == (int(random_rgb[1, 1, 0]) + 1) % 256


@pytest.mark.parametrize(("encoding", "order"), [("rgba8", "rgb"), ("bgra8", "bgr")])
def test_alpha_channel_is_dropped(encoding: str, order: str, random_rgb: np.ndarray) -> None:
    colour = random_rgb if order == "rgb" else random_rgb[:, :, ::-1]
    alpha = np.full((HEIGHT, WIDTH, 1), 99, dtype=np.uint8)
    step = WIDTH * 4 + 8
    data = pack_rows(np.concatenate([colour, alpha], axis=-1), step)

    image = decode_raw_image(encoding, HEIGHT, WIDTH, step, 0, data)

    assert image.color_order == order
    assert image.pixels.shape == (HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(image.pixels, colour)


@pytest.mark.parametrize(
    "data_type", ["bytes", "bytearray", "memoryview", "array", "ndarray", "2d_ndarray"]
)
def test_every_buffer_type_rclpy_may_deliver_is_accepted(
    data_type: str, random_rgb: np.ndarray
) -> None:
    raw = random_rgb.tobytes()
    data = {
        "bytes": raw,
        "bytearray": bytearray(raw),
        "memoryview": memoryview(raw),
        "array": array.array("B", raw),
        "ndarray": np.frombuffer(raw, dtype=np.uint8),
        "2d_ndarray": np.frombuffer(raw, dtype=np.uint8).reshape(HEIGHT, -1),
    }[data_type]

    image = decode_raw_image("rgb8", HEIGHT, WIDTH, WIDTH * 3, 0, data)

    np.testing.assert_array_equal(image.pixels, random_rgb)


def test_array_array_input_is_not_copied(random_rgb: np.ndarray) -> None:
    data = array.array("B", random_rgb.tobytes())

    image = decode_raw_image("rgb8", HEIGHT, WIDTH, WIDTH * 3, 0, data)
    data[0] = (int(random_rgb[0, 0, 0]) + 1) % 256

    assert image.pixels[0, 0, 0] == data[0]


# --- 16-bit ---------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("padding", [0, 6])
def test_sixteen_bit_keeps_top_eight_bits_in_both_byte_orders(
    encoding: str, big_endian: bool, padding: int
) -> None:
    samples = np.random.default_rng(3).integers(0, 65536, size=(HEIGHT, WIDTH)).tolist()
    byte_order = "big" if big_endian else "little"
    step = WIDTH * 2 + padding
    data = b"".join(
        b"".join(value.to_bytes(2, byte_order) for value in row) + bytes(padding) for row in samples
    )

    image = decode_raw_image(encoding, HEIGHT, WIDTH, step, int(big_endian), data)

    expected = np.array([[value // 256 for value in row] for row in samples], dtype=np.uint8)
    assert image.color_order == "mono"
    assert image.pixels.dtype == np.uint8
    np.testing.assert_array_equal(image.pixels, expected)


# --- YUV 4:2:2 ------------------------------------------------------------------------------


def bt601_limited_range_yuv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Studio-range BT.601 (Y in 16..235), the range V4L2 cameras deliver YUYV/UYVY in."""
    red, green, blue = (rgb[..., channel].astype(np.float64) for channel in range(3))
    luma = 16 + (65.481 * red + 128.553 * green + 24.966 * blue) / 255
    chroma_blue = 128 + (-37.797 * red - 74.203 * green + 112.0 * blue) / 255
    chroma_red = 128 + (112.0 * red - 93.786 * green - 18.214 * blue) / 255
    return tuple(
        np.clip(np.round(plane), 0, 255).astype(np.uint8)
        for plane in (luma, chroma_blue, chroma_red)
    )


@pytest.mark.parametrize(
    ("encoding", "byte_order"),
    [("yuv422", "UYVY"), ("uyvy", "UYVY"), ("yuv422_yuy2", "YUYV"), ("yuyv", "YUYV")],
)
@pytest.mark.parametrize("padding", [0, 4])
def test_yuv422_matches_bt601(encoding: str, byte_order: str, padding: int) -> None:
    # Pixel pairs share one colour so 4:2:2 subsampling loses nothing; colours
    # are kept inside the range that limited-range YUV can represent.
    pair_colours = np.random.default_rng(11).integers(
        30, 220, size=(HEIGHT, WIDTH // 2, 3), dtype=np.uint8
    )
    rgb = np.repeat(pair_colours, 2, axis=1)
    luma, chroma_blue, chroma_red = bt601_limited_range_yuv(rgb)
    left_luma, right_luma = luma[:, 0::2], luma[:, 1::2]
    pair_u, pair_v = chroma_blue[:, 0::2], chroma_red[:, 0::2]
    if byte_order == "UYVY":
        quads = np.stack([pair_u, left_luma, pair_v, right_luma], axis=-1)
    else:
        quads = np.stack([left_luma, pair_u, right_luma, pair_v], axis=-1)
    step = WIDTH * 2 + padding

    image = decode_raw_image(encoding, HEIGHT, WIDTH, step, 0, pack_rows(quads, step))

    assert image.color_order == "rgb"
    assert image.pixels.shape == (HEIGHT, WIDTH, 3)
    error = np.abs(image.pixels.astype(int) - rgb.astype(int))
    assert error.max() <= 3


# --- Bayer ----------------------------------------------------------------------------------

BAYER_PATTERNS = {
    "bayer_rggb8": ("R", "G", "G", "B"),
    "bayer_bggr8": ("B", "G", "G", "R"),
    "bayer_gbrg8": ("G", "B", "R", "G"),
    "bayer_grbg8": ("G", "R", "B", "G"),
}


def bayer_mosaic(rgb: np.ndarray, pattern: tuple[str, str, str, str]) -> np.ndarray:
    """Keep one channel per pixel; pattern lists the 2x2 cell row by row from the origin."""
    channel_index = {"R": 0, "G": 1, "B": 2}
    mosaic = np.empty(rgb.shape[:2], dtype=np.uint8)
    for cell_position, colour in enumerate(pattern):
        row_offset, col_offset = divmod(cell_position, 2)
        mosaic[row_offset::2, col_offset::2] = rgb[
            row_offset::2, col_offset::2, channel_index[colour]
        ]
    return mosaic


def interior_error(decoded: np.ndarray, expected: np.ndarray, border: int = 2) -> int:
    inner = (slice(border, -border), slice(border, -border))
    return int(np.abs(decoded[inner].astype(int) - expected[inner].astype(int)).max())


@pytest.mark.parametrize("encoding", sorted(BAYER_PATTERNS))
@pytest.mark.parametrize("padding", [0, 3])
def test_bayer_demosaics_to_the_original_rgb(
    encoding: str, padding: int, smooth_rgb: np.ndarray
) -> None:
    mosaic = bayer_mosaic(smooth_rgb, BAYER_PATTERNS[encoding])
    step = WIDTH + padding

    image = decode_raw_image(encoding, HEIGHT, WIDTH, step, 0, pack_rows(mosaic, step))

    assert image.color_order == "rgb"
    assert image.pixels.shape == (HEIGHT, WIDTH, 3)
    assert interior_error(image.pixels, smooth_rgb) <= 2


def test_bayer_test_image_detects_a_wrong_pattern(smooth_rgb: np.ndarray) -> None:
    mosaic = bayer_mosaic(smooth_rgb, BAYER_PATTERNS["bayer_rggb8"])

    for wrong_encoding in ("bayer_bggr8", "bayer_gbrg8", "bayer_grbg8"):
        image = decode_raw_image(wrong_encoding, HEIGHT, WIDTH, WIDTH, 0, mosaic.tobytes())
        assert interior_error(image.pixels, smooth_rgb) > 20


# --- raw errors -----------------------------------------------------------------------------


def test_unknown_encoding_is_rejected_with_the_supported_list() -> None:
    with pytest.raises(ImageFormatError, match="unsupported encoding 'nv21'") as raised:
        decode_raw_image("nv21", 2, 2, 2, 0, bytes(4))
    for encoding in ("mono8", "rgb8", "bayer_rggb8", "yuv422"):
        assert encoding in str(raised.value)


BYTES_PER_PIXEL = {
    "mono8": 1,
    "8UC1": 1,
    "mono16": 2,
    "16UC1": 2,
    "rgb8": 3,
    "bgr8": 3,
    "8UC3": 3,
    "rgba8": 4,
    "bgra8": 4,
    "yuv422": 2,
    "uyvy": 2,
    "yuv422_yuy2": 2,
    "yuyv": 2,
    "bayer_rggb8": 1,
    "bayer_bggr8": 1,
    "bayer_gbrg8": 1,
    "bayer_grbg8": 1,
}


def test_supported_encodings_are_exactly_the_documented_ones() -> None:
    assert set(BYTES_PER_PIXEL) == SUPPORTED_ENCODINGS


@pytest.mark.parametrize("encoding", sorted(BYTES_PER_PIXEL))
def test_every_supported_encoding_yields_an_8_bit_image(encoding: str) -> None:
    step = 6 * BYTES_PER_PIXEL[encoding]

    image = decode_raw_image(encoding, 4, 6, step, 0, bytes(4 * step))

    assert isinstance(image, CameraImage)
    assert image.pixels.shape[:2] == (4, 6)
    assert image.pixels.dtype == np.uint8
    assert image.color_order in ("mono", "rgb", "bgr")
    assert (image.pixels.ndim == 2) == (image.color_order == "mono")


@pytest.mark.parametrize(("height", "width"), [(0, 4), (4, 0)])
def test_zero_size_is_rejected(height: int, width: int) -> None:
    with pytest.raises(ImageFormatError, match=f"height={height} width={width}"):
        decode_raw_image("mono8", height, width, 4, 0, b"")


def test_step_smaller_than_row_is_rejected() -> None:
    with pytest.raises(ImageFormatError, match=r"step 11 is smaller than .* = 12"):
        decode_raw_image("rgb8", 2, 4, 11, 0, bytes(22))


def test_data_length_mismatch_reports_expected_and_actual() -> None:
    with pytest.raises(ImageFormatError, match="expected height\\*step = 24 bytes, got 23"):
        decode_raw_image("rgb8", 2, 4, 12, 0, bytes(23))


def test_odd_width_yuv422_is_rejected() -> None:
    with pytest.raises(ImageFormatError, match="width must be even, got 5"):
        decode_raw_image("yuv422", 2, 5, 10, 0, bytes(20))


def test_non_uint8_array_is_rejected() -> None:
    with pytest.raises(ImageFormatError, match="dtype uint8, got float32"):
        decode_raw_image("mono8", 2, 2, 2, 0, np.zeros(4, dtype=np.float32))


def test_non_buffer_data_is_rejected() -> None:
    with pytest.raises(ImageFormatError, match="bytes-like object, got list"):
        decode_raw_image("mono8", 2, 2, 2, 0, [0, 0, 0, 0])


def test_non_contiguous_buffer_is_rejected() -> None:
    with pytest.raises(ImageFormatError, match="contiguous bytes-like object, got memoryview"):
        decode_raw_image("mono8", 2, 2, 2, 0, memoryview(bytes(8))[::2])


# --- compressed -----------------------------------------------------------------------------


def encode(extension: str, image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(extension, image)
    assert ok
    return encoded.tobytes()


def test_png_colour_is_lossless_bgr(random_rgb: np.ndarray) -> None:
    bgr = random_rgb[:, :, ::-1]

    image = decode_compressed_image("png", encode(".png", bgr))

    assert image.color_order == "bgr"
    np.testing.assert_array_equal(image.pixels, bgr)


def test_jpeg_colour_is_close_to_the_original(smooth_rgb: np.ndarray) -> None:
    bgr = np.ascontiguousarray(smooth_rgb[:, :, ::-1])
    data = array.array("B", encode(".jpg", bgr))

    image = decode_compressed_image("rgb8; jpeg compressed bgr8", data)

    assert image.color_order == "bgr"
    assert image.pixels.shape == (HEIGHT, WIDTH, 3)
    assert np.abs(image.pixels.astype(int) - bgr.astype(int)).mean() < 4


def test_png_stored_in_rgb_order_is_reported_as_rgb(random_rgb: np.ndarray) -> None:
    # A publisher that declares 'compressed rgb8' handed RGB memory to the encoder.
    image = decode_compressed_image("rgb8; png compressed rgb8", encode(".png", random_rgb))

    assert image.color_order == "rgb"
    np.testing.assert_array_equal(image.pixels, random_rgb)


def test_png_mono_is_lossless(random_rgb: np.ndarray) -> None:
    gray = np.ascontiguousarray(random_rgb[:, :, 1])

    image = decode_compressed_image("mono8; png compressed mono8", encode(".png", gray))

    assert image.color_order == "mono"
    np.testing.assert_array_equal(image.pixels, gray)


def test_png_sixteen_bit_keeps_top_eight_bits() -> None:
    samples = np.random.default_rng(5).integers(0, 65536, size=(HEIGHT, WIDTH), dtype=np.uint16)

    image = decode_compressed_image("mono16; png compressed mono16", encode(".png", samples))

    assert image.color_order == "mono"
    assert image.pixels.dtype == np.uint8
    np.testing.assert_array_equal(image.pixels, (samples // 256).astype(np.uint8))


def test_png_with_alpha_drops_alpha(random_rgb: np.ndarray) -> None:
    bgra = np.concatenate(
        [random_rgb[:, :, ::-1], np.full((HEIGHT, WIDTH, 1), 17, dtype=np.uint8)], axis=-1
    )

    image = decode_compressed_image("bgra8; png compressed bgra8", encode(".png", bgra))

    assert image.pixels.shape == (HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(image.pixels, random_rgb[:, :, ::-1])


def test_compressed_depth_is_rejected() -> None:
    with pytest.raises(ImageFormatError, match="compressedDepth images are not supported"):
        decode_compressed_image("16UC1; compressedDepth", bytes(64))


def test_undecodable_data_is_rejected() -> None:
    with pytest.raises(ImageFormatError, match=r"could not decode .*'jpeg', 9 bytes"):
        decode_compressed_image("jpeg", b"not a jpg")


def test_empty_compressed_data_is_rejected() -> None:
    with pytest.raises(ImageFormatError, match="empty"):
        decode_compressed_image("png", b"")


# --- payload helpers ------------------------------------------------------------------------


def test_flow_payload_is_little_endian_float32_pairs() -> None:
    flow = np.random.default_rng(1).normal(size=(HEIGHT, WIDTH, 2))

    height, width, encoding, step, data = flow_to_image_payload(flow)

    assert (height, width, encoding, step) == (HEIGHT, WIDTH, "32FC2", WIDTH * 8)
    assert len(data) == height * step
    decoded = np.frombuffer(data, dtype="<f4").reshape(HEIGHT, WIDTH, 2)
    np.testing.assert_array_equal(decoded, flow.astype(np.float32))


def test_flow_payload_rejects_bad_input() -> None:
    with pytest.raises(ImageFormatError, match=r"HxWx2 .* got \(4, 4, 3\)"):
        flow_to_image_payload(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ImageFormatError, match="floating point, got dtype int32"):
        flow_to_image_payload(np.zeros((4, 4, 2), dtype=np.int32))


def test_rgb_payload_round_trips_through_decode(random_rgb: np.ndarray) -> None:
    strided_view = random_rgb[:, ::-1]

    height, width, encoding, step, data = rgb_to_image_payload(strided_view)
    image = decode_raw_image(encoding, height, width, step, 0, data)

    assert (height, width, encoding, step) == (HEIGHT, WIDTH, "rgb8", WIDTH * 3)
    assert image.color_order == "rgb"
    np.testing.assert_array_equal(image.pixels, strided_view)


def test_rgb_payload_rejects_bad_input() -> None:
    with pytest.raises(ImageFormatError, match=r"HxWx3 .* got \(4, 4\)"):
        rgb_to_image_payload(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ImageFormatError, match="dtype uint8, got float64"):
        rgb_to_image_payload(np.zeros((4, 4, 3)))
