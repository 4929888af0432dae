"""The node end to end: images in over DDS, flow out, for every input encoding.

One node process (DIS backend, no weights) serves the whole module; each test
sends frames with stamps later than all earlier ones, so tests do not reset
each other's history. Expected flow comes from the analytic motion of the
synthetic texture (ros_test_support.textured_image), never from the node.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from neuflow_ros.msg import OpticalFlow
from ros_test_support import (
    DiagnosticsWatcher,
    NodeProcess,
    camera_count,
    flow_array,
    flow_for,
    image_msg,
    prime_flow,
    rgb_msg,
    send_processed,
    stamp_ns,
    textured_image,
)
from sensor_msgs.msg import Image

WIDTH, HEIGHT = 128, 96
SHIFT = (1.5, -0.75)
MARGIN = 16
FLOW_TIMEOUT_S = 10.0

_stamps = itertools.count(start=1_000_000_000_000, step=33_000_000)


def next_stamp() -> int:
    return next(_stamps)


@pytest.fixture(scope="module")
def node(harness, tmp_path_factory):
    process = NodeProcess(
        tmp_path_factory.mktemp("node_flow"),
        {"diagnostic_period": 0.2, "max_frame_gap": 1.0},
    )
    watcher = DiagnosticsWatcher(harness, process.fqn)
    assert watcher.wait_engine_ready(), process.output()
    yield process
    process.close()


@pytest.fixture(scope="module")
def diagnostics(harness, node):
    return DiagnosticsWatcher(harness, node.fqn)


@pytest.fixture(scope="module")
def camera(harness, node):
    publisher = harness.publisher(Image, node.input_topic("image"), reliable=True)
    assert harness.wait_for_subscribers(publisher), node.output()
    return publisher


@pytest.fixture(scope="module")
def flows(harness, node, camera):
    """Flow collector, returned once a flow has come through (all endpoints matched)."""
    collector = harness.collect(OpticalFlow, node.topic("flow"))
    prime_flow(collector, camera, _stamps, node)
    return collector


def flow_of(flows, stamp_nanoseconds: int):
    return flow_for(flows, stamp_nanoseconds, FLOW_TIMEOUT_S)


def interior_error(flow: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    return np.abs(flow[MARGIN:-MARGIN, MARGIN:-MARGIN] - np.asarray(shift, dtype=np.float32))


# --- test-side encoders, written from the ROS encoding definitions ------------------------

def _luma(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[:, :, i].astype(np.float64) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


def _yuv422(rgb: np.ndarray, order: str) -> bytes:
    """Pack as UYVY ('uyvy') or YUYV ('yuyv') with BT.601 full-range chroma of each pixel pair."""
    r, g, b = (rgb[:, :, i].astype(np.float64) for i in range(3))
    y = _luma(rgb)
    u = -0.168736 * r - 0.331264 * g + 0.5 * b + 128.0
    v = 0.5 * r - 0.418688 * g - 0.081312 * b + 128.0
    u_pair = (u[:, 0::2] + u[:, 1::2]) / 2.0
    v_pair = (v[:, 0::2] + v[:, 1::2]) / 2.0
    y0, y1 = y[:, 0::2], y[:, 1::2]
    parts = (u_pair, y0, v_pair, y1) if order == "uyvy" else (y0, u_pair, y1, v_pair)
    packed = np.stack(parts, axis=2)
    return np.clip(np.round(packed), 0, 255).astype(np.uint8).tobytes()


def _bayer(rgb: np.ndarray, pattern: str) -> bytes:
    """Mosaic with the 2x2 pattern named from the top-left pixel (ROS convention)."""
    channel = {"r": 0, "g": 1, "b": 2}
    mosaic = np.empty(rgb.shape[:2], dtype=np.uint8)
    for index, letter in enumerate(pattern):
        row, col = divmod(index, 2)
        mosaic[row::2, col::2] = rgb[row::2, col::2, channel[letter]]
    return mosaic.tobytes()


def encode(rgb: np.ndarray, encoding: str) -> tuple[bytes, int, int]:
    """(data, step, is_bigendian) of ``rgb`` in ``encoding``."""
    width = rgb.shape[1]
    gray = np.clip(np.round(_luma(rgb)), 0, 255).astype(np.uint8)
    if encoding in ("mono8", "8UC1"):
        return gray.tobytes(), width, 0
    if encoding in ("mono16", "16UC1"):
        big_endian = encoding == "mono16"
        values = gray.astype(np.uint16) * 257
        return values.astype(">u2" if big_endian else "<u2").tobytes(), width * 2, int(big_endian)
    if encoding == "rgb8":
        return rgb.tobytes(), width * 3, 0
    if encoding in ("bgr8", "8UC3"):
        return rgb[:, :, ::-1].tobytes(), width * 3, 0
    alpha = np.full((*rgb.shape[:2], 1), 255, dtype=np.uint8)
    if encoding == "rgba8":
        return np.concatenate([rgb, alpha], axis=2).tobytes(), width * 4, 0
    if encoding == "bgra8":
        return np.concatenate([rgb[:, :, ::-1], alpha], axis=2).tobytes(), width * 4, 0
    if encoding in ("yuv422", "uyvy"):
        return _yuv422(rgb, "uyvy"), width * 2, 0
    if encoding in ("yuv422_yuy2", "yuyv"):
        return _yuv422(rgb, "yuyv"), width * 2, 0
    if encoding.startswith("bayer_"):
        return _bayer(rgb, encoding[len("bayer_"):-1]), width, 0
    raise AssertionError(f"test has no encoder for {encoding}")


TEST_ENCODINGS = (
    "mono8", "8UC1", "mono16", "16UC1", "rgb8", "bgr8", "8UC3", "rgba8", "bgra8",
    "yuv422", "uyvy", "yuv422_yuy2", "yuyv",
    "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8",
)


def test_every_supported_encoding_has_a_test_encoder():
    from neuflow_ros.imaging.image_conversion import SUPPORTED_ENCODINGS

    assert set(TEST_ENCODINGS) == set(SUPPORTED_ENCODINGS)


# --- tests --------------------------------------------------------------------------------

def test_known_subpixel_translation(camera, flows, diagnostics):
    first, second = next_stamp(), next_stamp()
    first_msg = rgb_msg(textured_image(WIDTH, HEIGHT), first, "cam_optical")
    send_processed(camera, diagnostics, first_msg)
    camera.publish(rgb_msg(textured_image(WIDTH, HEIGHT, SHIFT), second, "cam_optical"))
    msg = flow_of(flows, second)
    assert msg is not None, "no flow for the second frame"
    assert msg.header.frame_id == "cam_optical"
    assert stamp_ns(msg.previous_stamp) == first
    assert msg.flow.header == msg.header
    assert (msg.flow.encoding, msg.flow.width, msg.flow.height) == ("32FC2", WIDTH, HEIGHT)
    assert (msg.input_width, msg.input_height) == (WIDTH, HEIGHT)
    error = interior_error(flow_array(msg), SHIFT)
    assert error.max() < 0.35, f"max interior error {error.max():.3f} px"
    assert error.mean() < 0.15, f"mean interior error {error.mean():.3f} px"


@pytest.mark.parametrize("encoding", TEST_ENCODINGS)
def test_encoding_yields_correct_flow(camera, flows, diagnostics, encoding):
    stamps = [next_stamp(), next_stamp()]
    for stamp_value, shift in zip(stamps, [(0.0, 0.0), SHIFT], strict=True):
        data, step, big_endian = encode(textured_image(WIDTH, HEIGHT, shift), encoding)
        send_processed(camera, diagnostics, image_msg(
            data, encoding, WIDTH, HEIGHT, step, stamp_value, is_bigendian=big_endian
        ))
    msg = flow_of(flows, stamps[1])
    assert msg is not None, f"no flow for {encoding}"
    assert stamp_ns(msg.previous_stamp) == stamps[0]
    assert np.median(interior_error(flow_array(msg), SHIFT)) < 0.25


def test_padded_rows_are_handled(camera, flows, diagnostics):
    """A step larger than width*3 (row padding) must not shear the image."""
    stamps = [next_stamp(), next_stamp()]
    step = WIDTH * 3 + 12
    for stamp_value, shift in zip(stamps, [(0.0, 0.0), SHIFT], strict=True):
        padded = np.zeros((HEIGHT, step), dtype=np.uint8)
        padded[:, : WIDTH * 3] = textured_image(WIDTH, HEIGHT, shift).reshape(HEIGHT, -1)
        send_processed(
            camera, diagnostics, image_msg(padded, "rgb8", WIDTH, HEIGHT, step, stamp_value)
        )
    msg = flow_of(flows, stamps[1])
    assert msg is not None
    assert np.median(interior_error(flow_array(msg), SHIFT)) < 0.25


MALFORMED = {
    # reason key in /diagnostics: (encoding, width, height, step, data length)
    "invalid_layout": ("rgb8", WIDTH, HEIGHT, WIDTH * 2, WIDTH * 2 * HEIGHT),
    "data_length": ("rgb8", WIDTH, HEIGHT, WIDTH * 3, WIDTH * 3 * HEIGHT - 7),
    "unsupported_encoding": ("rgb42", WIDTH, HEIGHT, WIDTH * 3, WIDTH * 3 * HEIGHT),
    "zero_size": ("rgb8", 0, 0, 0, 0),
}


def test_malformed_frames_are_counted_and_survived(node, camera, flows, diagnostics):
    good = next_stamp()
    send_processed(camera, diagnostics, rgb_msg(textured_image(WIDTH, HEIGHT), good))
    for encoding, width, height, step, length in MALFORMED.values():
        camera.publish(image_msg(bytes(length), encoding, width, height, step, next_stamp()))
    after = next_stamp()
    camera.publish(rgb_msg(textured_image(WIDTH, HEIGHT, SHIFT), after))
    msg = flow_of(flows, after)
    assert msg is not None, "the node stopped producing flow after malformed frames"
    assert stamp_ns(msg.previous_stamp) == good, "a malformed frame entered the history"
    assert node.process.poll() is None

    def counted(_report):
        values = diagnostics.camera()[2]
        return all(values.get(f"malformed: {reason}") == "1" for reason in MALFORMED)

    report = diagnostics.wait_until(counted, 5.0)
    assert counted(report), report
    level, message, values = diagnostics.camera()
    assert level == 1, "malformed frames must raise a WARN"
    assert "malformed" in message
    assert values["malformed frames"] == str(len(MALFORMED))
    assert "dropping malformed frame" in node.output()



def _expect_reset(camera, flows, diagnostics, reason, frames):
    """Send (stamp, image) frames; the second starts a new history, the third pairs with it."""
    before = camera_count(diagnostics, f"resets: {reason}")
    for stamp_value, image in frames:
        send_processed(camera, diagnostics, rgb_msg(image, stamp_value))
    msg = flow_of(flows, frames[2][0])
    assert msg is not None
    assert stamp_ns(msg.previous_stamp) == frames[1][0]
    assert all(stamp_ns(m.header.stamp) != frames[1][0] for m in flows.messages), (
        "flow was computed across the reset"
    )
    report = diagnostics.wait_until(
        lambda _: camera_count(diagnostics, f"resets: {reason}") == before + 1, 5.0
    )
    assert camera_count(diagnostics, f"resets: {reason}") == before + 1, report


def test_size_change_resets_history(camera, flows, diagnostics):
    _expect_reset(camera, flows, diagnostics, "size_changed", [
        (next_stamp(), textured_image(WIDTH, HEIGHT)),
        (next_stamp(), textured_image(160, 120)),
        (next_stamp(), textured_image(160, 120, SHIFT)),
    ])
    msg = flows.messages[-1]
    assert (msg.flow.width, msg.flow.height) == (160, 120)


def test_backwards_time_jump_resets_history(camera, flows, diagnostics):
    stamps = [next_stamp() for _ in range(20)]  # 0.66 s: within max_frame_gap
    _expect_reset(camera, flows, diagnostics, "time_backwards", [
        (stamps[-1], textured_image(WIDTH, HEIGHT)),
        (stamps[5], textured_image(WIDTH, HEIGHT)),
        (stamps[6], textured_image(WIDTH, HEIGHT, SHIFT)),
    ])


def test_gap_longer_than_max_frame_gap_resets_history(camera, flows, diagnostics):
    first = next_stamp()
    stamps = [next_stamp() for _ in range(40)]  # 1.3 s later: more than max_frame_gap
    _expect_reset(camera, flows, diagnostics, "gap_too_large", [
        (first, textured_image(WIDTH, HEIGHT)),
        (stamps[-2], textured_image(WIDTH, HEIGHT)),
        (stamps[-1], textured_image(WIDTH, HEIGHT, SHIFT)),
    ])


def test_flow_vis_is_only_computed_while_subscribed(harness, node, camera, flows, diagnostics):
    def visualizations() -> int:
        return int(diagnostics.camera()[2].get("visualizations published", "-1"))

    stamps = [next_stamp(), next_stamp()]
    send_processed(camera, diagnostics, rgb_msg(textured_image(WIDTH, HEIGHT), stamps[0]))
    camera.publish(rgb_msg(textured_image(WIDTH, HEIGHT, SHIFT), stamps[1]))
    assert flow_of(flows, stamps[1]) is not None
    diagnostics.wait_until(lambda _: visualizations() >= 0, 5.0)
    assert visualizations() == 0, "flow_vis was computed without a subscriber"

    vis = harness.collect(Image, node.topic("flow_vis"))
    # The node learns about the new subscriber asynchronously: send frames until it does.
    for _ in range(40):
        stamp_value = next_stamp()
        camera.publish(rgb_msg(textured_image(WIDTH, HEIGHT), stamp_value))
        if vis.wait_for(lambda messages: len(messages) > 0, 0.25):
            break
    assert vis.messages, "no flow_vis although subscribed"
    stamps = [next_stamp(), next_stamp()]
    send_processed(camera, diagnostics, rgb_msg(textured_image(WIDTH, HEIGHT), stamps[0]))
    camera.publish(rgb_msg(textured_image(WIDTH, HEIGHT, SHIFT), stamps[1]))
    images = vis.wait_for(
        lambda messages: [m for m in messages if stamp_ns(m.header.stamp) == stamps[1]],
        FLOW_TIMEOUT_S,
    )
    assert images, "no flow_vis for the pair"
    image = images[0]
    assert (image.encoding, image.width, image.height) == ("rgb8", WIDTH, HEIGHT)
    rgb = np.frombuffer(bytes(image.data), np.uint8).reshape(HEIGHT, WIDTH, 3)
    interior = rgb[MARGIN:-MARGIN, MARGIN:-MARGIN].reshape(-1, 3).astype(np.float64)
    # Uniform motion -> one colour; a non-zero motion is not grey.
    assert interior.std(axis=0).max() < 25.0
    mean = interior.mean(axis=0)
    assert mean.max() - mean.min() > 40.0
    diagnostics.wait_until(lambda _: visualizations() >= 1, 5.0)
    assert visualizations() >= 1


def test_burst_every_frame_yields_flow_or_is_counted_as_dropped(camera, flows, diagnostics):
    """Frames faster than the worker: latest-frame-wins, and the books still balance."""
    width, height, count = 320, 240, 30
    images = [textured_image(width, height, (0.5 * i, 0.0)) for i in range(2)]
    send_processed(camera, diagnostics, rgb_msg(images[1], next_stamp()))  # new size: reset
    setup = next_stamp()
    send_processed(camera, diagnostics, rgb_msg(images[0], setup))
    assert flow_of(flows, setup) is not None
    # Start counting from a report that includes the setup frame's flow.
    diagnostics.wait_until(
        lambda _: camera_count(diagnostics, "flows published") == len(flows.messages), 5.0
    )
    keys = ("frames received", "flows published", "frames dropped", "resets")
    before = {key: camera_count(diagnostics, key) for key in keys}
    stamps = [next_stamp() for _ in range(count)]
    for index, stamp_value in enumerate(stamps):
        camera.publish(rgb_msg(images[index % 2], stamp_value))
        time.sleep(0.003)

    def delta(key: str) -> int:
        return camera_count(diagnostics, key) - before[key]

    diagnostics.wait_until(
        lambda _: delta("flows published") + delta("frames dropped") >= count, FLOW_TIMEOUT_S
    )
    assert delta("frames received") == count
    assert delta("resets") == 0
    assert delta("flows published") + delta("frames dropped") == count
    assert flow_of(flows, stamps[-1]) is not None, "the newest frame must always be processed"
    published = [stamp_ns(m.header.stamp) for m in flows.messages
                 if stamp_ns(m.header.stamp) in set(stamps)]
    assert published == sorted(published)
