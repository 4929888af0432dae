"""The .flo and KITTI flow files against their published layouts, byte by byte."""

import struct

import cv2
import numpy as np
import pytest

from neuflow_ros.imaging.flow_io import (
    FlowFileError,
    decode_flo,
    encode_flo,
    read_flo,
    read_kitti_flow,
    write_flo,
    write_kitti_flow,
)

# 3 wide, 2 high; values are multiples of 1/64 so KITTI stores them exactly.
FLOW = np.array(
    [[[0.5, -1.25], [2.0, 0.0], [-3.015625, 7.75]],
     [[0.0, 0.25], [100.5, -200.0], [-0.015625, 1.0]]],
    dtype=np.float32,
)


def expected_flo_bytes(flow: np.ndarray) -> bytes:
    """Middlebury layout written out with struct, independently of the module."""
    height, width = flow.shape[:2]
    out = b"PIEH" + struct.pack("<ii", width, height)
    for row in range(height):
        for col in range(width):
            out += struct.pack("<ff", float(flow[row, col, 0]), float(flow[row, col, 1]))
    return out


def test_flo_bytes_follow_the_middlebury_layout(tmp_path):
    assert struct.pack("<f", 202021.25) == b"PIEH"
    assert encode_flo(FLOW) == expected_flo_bytes(FLOW)
    path = tmp_path / "a.flo"
    write_flo(path, FLOW)
    assert path.read_bytes() == expected_flo_bytes(FLOW)


def test_flo_reads_back_a_file_written_independently(tmp_path):
    path = tmp_path / "b.flo"
    path.write_bytes(expected_flo_bytes(FLOW))
    flow = read_flo(path)
    assert flow.dtype == np.float32
    np.testing.assert_array_equal(flow, FLOW)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PIE", "shorter than"),
        (b"ABCD" + struct.pack("<ii", 1, 1) + b"\0" * 8, "magic"),
        (b"PIEH" + struct.pack("<ii", 0, 1), "invalid size"),
        (b"PIEH" + struct.pack("<ii", 2, 1) + b"\0" * 8, "must be 28 bytes"),
    ],
)
def test_flo_rejects_malformed_data(data, message):
    with pytest.raises(FlowFileError, match=message):
        decode_flo(data)


def test_flo_rejects_non_flow_arrays():
    with pytest.raises(ValueError, match="HxWx2"):
        encode_flo(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="floating point"):
        encode_flo(np.zeros((2, 2, 2), np.int32))


def test_kitti_png_channels_follow_the_devkit_layout(tmp_path):
    path = tmp_path / "flow.png"
    write_kitti_flow(path, FLOW)
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert bgr.dtype == np.uint16 and bgr.shape == (2, 3, 3)
    # R = u * 64 + 2**15, G = v * 64 + 2**15, B = valid; OpenCV returns BGR.
    expected_u = (FLOW[..., 0].astype(np.float64) * 64 + 32768).astype(np.uint16)
    expected_v = (FLOW[..., 1].astype(np.float64) * 64 + 32768).astype(np.uint16)
    np.testing.assert_array_equal(bgr[..., 2], expected_u)
    np.testing.assert_array_equal(bgr[..., 1], expected_v)
    np.testing.assert_array_equal(bgr[..., 0], np.ones((2, 3), np.uint16))


def test_kitti_png_reads_a_file_written_independently(tmp_path):
    u = (FLOW[..., 0] * 64 + 32768).astype(np.uint16)
    v = (FLOW[..., 1] * 64 + 32768).astype(np.uint16)
    valid = np.array([[1, 0, 1], [1, 1, 0]], np.uint16)
    path = tmp_path / "ref.png"
    assert cv2.imwrite(str(path), np.dstack([valid, v, u]))
    flow, read_valid = read_kitti_flow(path)
    np.testing.assert_array_equal(flow, FLOW)
    np.testing.assert_array_equal(read_valid, valid.astype(bool))


def test_kitti_marks_non_finite_and_masked_vectors_invalid(tmp_path):
    flow = FLOW.copy()
    flow[0, 1, 0] = np.nan
    mask = np.ones((2, 3), bool)
    mask[1, 2] = False
    path = tmp_path / "masked.png"
    write_kitti_flow(path, flow, valid=mask)
    read, valid = read_kitti_flow(path)
    assert not valid[0, 1] and not valid[1, 2] and valid.sum() == 4
    np.testing.assert_array_equal(read[0, 1], [0.0, 0.0])
    np.testing.assert_array_equal(read[valid], FLOW[valid])


def test_kitti_rounds_to_the_nearest_sixty_fourth_and_clips(tmp_path):
    flow = np.array([[[0.01, -0.01], [1000.0, -1000.0]]], np.float32)
    path = tmp_path / "round.png"
    write_kitti_flow(path, flow)
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert bgr[0, 0, 2] == 32769 and bgr[0, 0, 1] == 32767  # 0.64 -> 1, -0.64 -> -1
    assert bgr[0, 1, 2] == 65535 and bgr[0, 1, 1] == 0


def test_kitti_rejects_a_non_png_name_and_an_rgb_image(tmp_path):
    with pytest.raises(ValueError, match=r"\.png"):
        write_kitti_flow(tmp_path / "flow.jpg", FLOW)
    path = tmp_path / "eight_bit.png"
    cv2.imwrite(str(path), np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(FlowFileError, match="uint16"):
        read_kitti_flow(path)
