"""Fault injection: the real node over DDS, fed what broken cameras and drivers send.

Each case asserts that the node survives, counts the fault under its exact
diagnostics key, keeps the log bounded (no tracebacks, one line per reason and
5 s) and computes correct flow again right afterwards. Expected motion and
calibration come from the scenes and CameraInfos built here. The intake is
also fuzzed with hypothesis-generated Image and CompressedImage messages: every
message must be accounted for, as received or as malformed.
"""

from __future__ import annotations

import itertools
import math
import re
import time

import cv2
import numpy as np
import pytest
from damaged_images import damage_scan, png_bomb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from neuflow_ros.msg import OpticalFlow, TrackArray
from neuflow_weights import write_official_checkpoint
from ros_test_support import (
    DiagnosticsWatcher,
    NodeProcess,
    camera_count,
    flow_array,
    flow_for,
    image_msg,
    rgb_msg,
    send_processed,
    stamp,
    stamp_ns,
    textured_image,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud

WIDTH, HEIGHT = 160, 120
SHIFT = (1.5, -0.75)
MARGIN = 16
FX, FY, CX, CY = 120.0, 110.0, 80.0, 60.0
MAX_PIXELS = 100_000
"""max_input_pixels of the raw node: 400x300 is over it, the 160x120 scene far below."""
TIMEOUT_S = 15.0

_stamps = itertools.count(start=7_000_000_000_000, step=33_000_000)


def next_stamp() -> int:
    return next(_stamps)


def interior_error(flow: np.ndarray) -> float:
    inner = flow[MARGIN:-MARGIN, MARGIN:-MARGIN] - np.asarray(SHIFT, dtype=np.float32)
    return float(np.median(np.abs(inner)))


def camera_info(width: int = WIDTH, height: int = HEIGHT, **fields) -> CameraInfo:
    """A calibration of the test scene's camera; ``fields`` override any CameraInfo field."""
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.d = [0.0] * 5
    info.k = [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [FX, 0.0, CX, 0.0, 0.0, FY, CY, 0.0, 0.0, 0.0, 1.0, 0.0]
    for name, value in fields.items():
        setattr(info, name, value)
    return info


BAD_CAMERA_INFOS = {
    # reason: a CameraInfo every driver has been seen to send
    "size_mismatch": camera_info(2 * WIDTH, 2 * HEIGHT),
    "non_finite": camera_info(k=[math.nan, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]),
    "bad_focal": camera_info(k=[0.0] * 9),
    "unknown_model": camera_info(distortion_model="kannala_brandt"),
}
NAN_D = camera_info(d=[math.nan, 0.0, 0.0, 0.0, 0.0])
"""Also non_finite, in D instead of K."""


def log_lines(node: NodeProcess, pattern: str) -> list[str]:
    return [line for line in node.output().splitlines() if re.search(pattern, line)]


def assert_quiet_log(node: NodeProcess) -> None:
    output = node.output()
    assert "Traceback" not in output, output[-3000:]
    assert "[ERROR]" not in output, output[-3000:]


class Camera:
    """One camera's publishers and the node's outputs for it."""

    def __init__(self, harness, node: NodeProcess, name: str, compressed: bool = False) -> None:
        prefix = f"{name}/" if name else ""
        self.name = name
        if compressed:
            self.images = harness.publisher(
                CompressedImage, node.input_topic(f"{prefix}image/compressed"), reliable=True,
                depth=100,
            )
        else:
            self.images = harness.publisher(
                Image, node.input_topic(f"{prefix}image"), reliable=True, depth=100
            )
        self.info = harness.publisher(
            CameraInfo, node.input_topic(f"{prefix}camera_info"), reliable=True, depth=100
        )
        self.flows = harness.collect(OpticalFlow, node.topic(f"{prefix}flow"), depth=100)
        self.tracks = harness.collect(TrackArray, node.topic(f"{prefix}tracks"), depth=100)
        self.features = harness.collect(PointCloud, node.topic(f"{prefix}features"), depth=100)
        assert harness.wait_for_subscribers(self.images), node.output()
        assert harness.wait_for_subscribers(self.info), node.output()

    def count(self, watcher: DiagnosticsWatcher, key: str) -> int:
        return camera_count(watcher, key, self.name)

    def settled_flow_count(self, watcher: DiagnosticsWatcher) -> int:
        """'flows published' once /diagnostics has caught up with a camera at rest.

        The counter comes with the next diagnostics period (0.2 s), so a value read
        right after a flow arrived may be one short: wait until five reads over a
        second agree. (Comparing with the flows received here is not exact: under
        load a reliable writer of depth 2 may drop one before delivery.)
        """
        reads: list[int] = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(reads) < 5 or len(set(reads[-5:])) > 1:
            assert time.monotonic() < deadline, f"flows published never settled: {reads}"
            reads.append(self.count(watcher, "flows published"))
            time.sleep(0.25)
        return reads[-1]


@pytest.fixture(scope="module")
def raw(harness, tmp_path_factory):
    """A two-camera raw node: 'front' gets a good calibration, 'rear' only bad ones."""
    node = NodeProcess(
        tmp_path_factory.mktemp("node_faults"),
        {
            "cameras": ["front", "rear"], "diagnostic_period": 0.2, "drop_frames": False,
            "tracking.vins_features": True, "tracking.min_distance": 10.0,
            "input_qos.reliability": "reliable", "input_qos.depth": 100,
            "max_input_pixels": MAX_PIXELS,
        },
    )
    try:
        watcher = DiagnosticsWatcher(harness, node.fqn)
        assert watcher.wait_engine_ready(), node.output()
        cameras = {name: Camera(harness, node, name) for name in ("front", "rear")}
        for camera in cameras.values():
            assert harness.wait_for_publishers(node.topic(f"{camera.name}/features"))
        yield node, watcher, cameras
    finally:
        node.close()


def send_pair(camera: Camera, watcher: DiagnosticsWatcher, size=(WIDTH, HEIGHT)) -> tuple:
    """Frames showing the scene and the scene moved by SHIFT; returns their stamps."""
    first, second = next_stamp(), next_stamp()
    send_processed(camera.images, watcher, rgb_msg(textured_image(*size), first), camera.name)
    send_processed(
        camera.images, watcher, rgb_msg(textured_image(*size, SHIFT), second), camera.name
    )
    return first, second


def assert_correct_flow_from(camera: Camera, first: int, second: int) -> None:
    msg = flow_for(camera.flows, second, TIMEOUT_S)
    assert msg is not None, "no flow after the fault"
    assert stamp_ns(msg.previous_stamp) == first
    assert interior_error(flow_array(msg)) < 0.25


def tracks_for(camera: Camera, stamp_value: int, timeout_s: float = TIMEOUT_S):
    return camera.tracks.wait_for(
        lambda messages: next(
            (m for m in messages if stamp_ns(m.header.stamp) == stamp_value), None
        ),
        timeout_s,
    )


# --- case 2: CameraInfo validated at the door -----------------------------------------------


def test_bad_camera_info_never_replaces_the_good_one_and_is_counted_by_reason(raw):
    node, watcher, cameras = raw
    front = cameras["front"]
    front.info.publish(camera_info())
    first, second = send_pair(front, watcher)
    assert_correct_flow_from(front, first, second)
    before = {reason: front.count(watcher, f"camera_info rejected: {reason}")
              for reason in ("size_mismatch", "non_finite", "bad_focal", "unknown_model")}
    flows_before = front.settled_flow_count(watcher)
    sent_flows = 0
    last = second
    for bad in [*BAD_CAMERA_INFOS.values(), NAN_D]:
        front.info.publish(bad)
        last = next_stamp()
        send_processed(front.images, watcher, rgb_msg(textured_image(WIDTH, HEIGHT), last),
                       "front")
        sent_flows += 1
    expected = dict(before)
    for reason in BAD_CAMERA_INFOS:
        expected[reason] += 1
    expected["non_finite"] += 1  # NaN D
    report = watcher.wait_until(
        lambda _: all(front.count(watcher, f"camera_info rejected: {reason}") == count
                      for reason, count in expected.items())
        and front.count(watcher, "flows published") == flows_before + sent_flows,
        TIMEOUT_S,
    )
    for reason, count in expected.items():
        assert front.count(watcher, f"camera_info rejected: {reason}") == count, report
    assert front.count(watcher, "flows published") == flows_before + sent_flows, report
    level, message, _ = watcher.camera("front")
    assert level == 1 and "camera_info" in message
    # Tracks went on, still normalized with the good calibration, and so did ~/features.
    tracks = tracks_for(front, last)
    assert tracks is not None and len(tracks.tracks) > 10
    for track in tracks.tracks:
        assert track.normalized_x == pytest.approx((track.x - CX) / FX, abs=1e-4)
        assert track.normalized_y == pytest.approx((track.y - CY) / FY, abs=1e-4)
    assert front.features.wait_for(
        lambda clouds: any(stamp_ns(c.header.stamp) == last for c in clouds), TIMEOUT_S
    )
    assert_quiet_log(node)
    # One line per reason and 5 s, not one per message.
    assert len(log_lines(node, "ignoring camera_info on .*front")) <= len(expected)


def test_a_driver_calibrated_at_another_resolution_costs_one_line_per_5_s(raw):
    """The issue's case: CameraInfo with every frame at 30 Hz, for another resolution.

    It used to cost a traceback per frame (about 570 log lines/s) and stopped the
    tracks; now every message is counted and the log gets one line per 5 s.
    """
    node, watcher, cameras = raw
    front = cameras["front"]
    lines_before = len(log_lines(node, "ignoring camera_info on .*front.*size_mismatch"))
    rejected = front.count(watcher, "camera_info rejected: size_mismatch")
    flows = front.settled_flow_count(watcher)
    stamps = []
    started = time.monotonic()
    while time.monotonic() - started < 6.0:
        front.info.publish(BAD_CAMERA_INFOS["size_mismatch"])
        stamps.append(next_stamp())
        shift = (SHIFT[0] * len(stamps), SHIFT[1] * len(stamps))
        front.images.publish(rgb_msg(textured_image(WIDTH, HEIGHT, shift), stamps[-1]))
        time.sleep(1.0 / 30.0)
    report = watcher.wait_until(
        lambda _: front.count(watcher, "flows published") == flows + len(stamps), TIMEOUT_S
    )
    assert front.count(watcher, "flows published") == flows + len(stamps), report
    watcher.wait_until(
        lambda _: front.count(watcher, "camera_info rejected: size_mismatch")
        == rejected + len(stamps), TIMEOUT_S,
    )
    assert front.count(watcher, "camera_info rejected: size_mismatch") == rejected + len(stamps)
    assert tracks_for(front, stamps[-1]) is not None
    lines = len(log_lines(node, "ignoring camera_info on .*front.*size_mismatch")) - lines_before
    assert 1 <= lines <= 2, f"{lines} lines for {len(stamps)} rejected messages in 6 s"
    assert_quiet_log(node)


def test_without_a_good_calibration_tracks_keep_pixels_and_features_pause(raw):
    node, watcher, cameras = raw
    rear = cameras["rear"]
    for bad in BAD_CAMERA_INFOS.values():
        rear.info.publish(bad)
    first, second = send_pair(rear, watcher)
    assert_correct_flow_from(rear, first, second)
    tracks = tracks_for(rear, second)
    assert tracks is not None and len(tracks.tracks) > 10
    assert all(math.isnan(t.normalized_x) and math.isnan(t.normalized_y) for t in tracks.tracks)
    assert all(0.0 <= t.x < WIDTH and 0.0 <= t.y < HEIGHT for t in tracks.tracks)
    assert not rear.features.messages
    watcher.wait_until(lambda _: rear.count(watcher, "camera_info rejected") >= 4, TIMEOUT_S)
    assert rear.count(watcher, "camera_info rejected") == 4
    assert log_lines(node, "rear.*features is not published")
    # A calibration at twice the resolution, binned 2x2, describes these images: accepted.
    rear.info.publish(camera_info(
        2 * WIDTH, 2 * HEIGHT, binning_x=2, binning_y=2,
        k=[2 * FX, 0.0, 2 * CX, 0.0, 2 * FY, 2 * CY, 0.0, 0.0, 1.0],
    ))
    _, later = send_pair(rear, watcher)
    tracks = tracks_for(rear, later)
    assert tracks is not None and tracks.tracks
    for track in tracks.tracks:
        assert track.normalized_x == pytest.approx((track.x - CX) / FX, abs=1e-3)
    assert rear.features.wait_for(
        lambda clouds: any(stamp_ns(c.header.stamp) == later for c in clouds), TIMEOUT_S
    )
    assert rear.count(watcher, "camera_info rejected") == 4
    assert_quiet_log(node)


# --- case 3: one truthful minimum size ------------------------------------------------------


def test_frames_below_the_backends_minimum_are_too_small_and_flow_recovers(raw):
    node, watcher, cameras = raw
    front = cameras["front"]
    before = front.count(watcher, "malformed: too_small")
    # DIS 'fast' computes from 32 px; 400x26 used to crash the process inside OpenCV.
    sizes = [(8, 8), (11, 11), (400, 8), (400, 26), (31, 200)]
    for width, height in sizes:
        front.images.publish(rgb_msg(textured_image(width, height), next_stamp()))
    assert_survived(node, watcher, front, send_pair(front, watcher))
    watcher.wait_until(
        lambda _: front.count(watcher, "malformed: too_small") == before + len(sizes), TIMEOUT_S
    )
    assert front.count(watcher, "malformed: too_small") == before + len(sizes)
    assert len(log_lines(node, "too small for the flow engine")) <= 2


@pytest.mark.parametrize(("backend", "smallest"), [
    ("neuflow_v1", 8),  # pads any input up to its 32 px grid
    ("fallback", 16),  # neuflow_v2 without weights runs DIS 'medium' here
])
def test_each_backend_takes_exactly_the_frames_it_can_compute(
    harness, tmp_path_factory, backend, smallest
):
    folder = tmp_path_factory.mktemp(f"node_faults_{backend}")
    parameters = {"diagnostic_period": 0.2, "drop_frames": False, "tracking.enabled": False,
                  "input_qos.reliability": "reliable", "input_qos.depth": 100}
    if backend == "neuflow_v1":
        checkpoint = write_official_checkpoint(folder / "v1.pth", "v1", seed=3)
        parameters.update(backend="neuflow_v1", checkpoint=str(checkpoint), device="cpu",
                          cache_dir=str(folder / "cache"))
    else:
        parameters.update(backend="neuflow_v2", dis_preset="medium")
    node = NodeProcess(folder, parameters)
    try:
        watcher = DiagnosticsWatcher(harness, node.fqn)
        assert watcher.wait_engine_ready(60.0), node.output()
        camera = Camera(harness, node, "")
        for width, height in ((smallest - 1, smallest - 1), (400, smallest - 1)):
            camera.images.publish(rgb_msg(textured_image(width, height), next_stamp()))
        first, second = next_stamp(), next_stamp()
        size = (smallest, 2 * smallest)
        send_processed(camera.images, watcher, rgb_msg(textured_image(*size), first))
        send_processed(camera.images, watcher, rgb_msg(textured_image(*size, SHIFT), second))
        msg = flow_for(camera.flows, second, 60.0)
        assert msg is not None, node.output()
        assert (msg.flow.width, msg.flow.height) == size
        watcher.wait_until(lambda _: camera.count(watcher, "malformed: too_small") == 2, 10.0)
        assert camera.count(watcher, "malformed: too_small") == 2
        assert watcher.engine()[2]["worker exceptions"] == "0"
        assert_quiet_log(node)
    finally:
        node.close()


# --- case 5: size limit before allocation -----------------------------------------------------


def process_rss_mb(node: NodeProcess) -> float:
    with open(f"/proc/{node.process.pid}/status") as status:
        kilobytes = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    return kilobytes / 1024


def test_frames_over_max_input_pixels_are_too_large_and_leave_the_history_alone(raw):
    node, watcher, cameras = raw
    front = cameras["front"]
    _, second = send_pair(front, watcher)
    before = front.count(watcher, "malformed: too_large")
    resets = front.count(watcher, "resets")
    huge = rgb_msg(textured_image(400, 300), next_stamp())  # 120000 pixels
    for _ in range(3):
        huge.header.stamp = stamp(next_stamp())
        front.images.publish(huge)
    # A Bayer frame would be converted (allocated) before any later check: refused first.
    front.images.publish(image_msg(bytes(500 * 400), "bayer_rggb8", 500, 400, 500, next_stamp()))
    third = next_stamp()
    moved_twice = (2 * SHIFT[0], 2 * SHIFT[1])
    send_processed(front.images, watcher,
                   rgb_msg(textured_image(WIDTH, HEIGHT, moved_twice), third), "front")
    assert_correct_flow_from(front, second, third)  # SHIFT from the frame before the huge ones
    watcher.wait_until(
        lambda _: front.count(watcher, "malformed: too_large") == before + 4, TIMEOUT_S
    )
    assert front.count(watcher, "malformed: too_large") == before + 4
    assert front.count(watcher, "resets") == resets, "a rejected frame reached the worker"
    assert_quiet_log(node)


# --- compressed transport: strict decoding and header sizes (cases 4 and 5) -----------------


def jpeg_of(rgb: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return encoded.tobytes()


def compressed_msg(data: bytes, stamp_value: int, format: str = "jpeg") -> CompressedImage:
    msg = CompressedImage(format=format)
    msg.data = data
    msg.header.stamp = stamp(stamp_value)
    msg.header.frame_id = "camera"
    return msg


@pytest.fixture(scope="module")
def compressed(harness, tmp_path_factory):
    """A compressed-transport node with the default max_input_pixels (4096x3072)."""
    node = NodeProcess(
        tmp_path_factory.mktemp("node_faults_compressed"),
        {"transport": "compressed", "diagnostic_period": 0.2, "drop_frames": False,
         "input_qos.reliability": "reliable", "input_qos.depth": 100},
    )
    try:
        watcher = DiagnosticsWatcher(harness, node.fqn)
        assert watcher.wait_engine_ready(), node.output()
        yield node, watcher, Camera(harness, node, "", compressed=True)
    finally:
        node.close()


def send_compressed_pair(camera: Camera, watcher: DiagnosticsWatcher) -> tuple[int, int]:
    first, second = next_stamp(), next_stamp()
    for stamp_value, shift in ((first, (0.0, 0.0)), (second, SHIFT)):
        data = jpeg_of(textured_image(WIDTH, HEIGHT, shift))
        send_processed(camera.images, watcher, compressed_msg(data, stamp_value))
    return first, second


def test_corrupt_jpeg_is_decode_failed_not_wrong_flow(compressed):
    node, watcher, camera = compressed
    first, second = send_compressed_pair(camera, watcher)
    assert_correct_flow_from(camera, first, second)
    before = camera.count(watcher, "malformed: decode_failed")
    corrupt = damage_scan(jpeg_of(textured_image(WIDTH, HEIGHT, (2 * SHIFT[0], 2 * SHIFT[1]))))
    # The frame OpenCV would have decoded (with a warning on stderr) and used.
    assert cv2.imdecode(np.frombuffer(corrupt, np.uint8), cv2.IMREAD_UNCHANGED) is not None
    for _ in range(3):
        camera.images.publish(compressed_msg(corrupt, next_stamp()))
    third = next_stamp()
    data = jpeg_of(textured_image(WIDTH, HEIGHT, (3 * SHIFT[0], 3 * SHIFT[1])))
    send_processed(camera.images, watcher, compressed_msg(data, third))
    msg = flow_for(camera.flows, third, TIMEOUT_S)
    assert msg is not None and stamp_ns(msg.previous_stamp) == second
    # From the frame before the corrupt ones: twice SHIFT, measured on intact frames only.
    inner = flow_array(msg)[MARGIN:-MARGIN, MARGIN:-MARGIN] - np.float32(SHIFT) * 2
    assert float(np.median(np.abs(inner))) < 0.3
    watcher.wait_until(
        lambda _: camera.count(watcher, "malformed: decode_failed") == before + 3, TIMEOUT_S
    )
    assert camera.count(watcher, "malformed: decode_failed") == before + 3
    assert_quiet_log(node)
    assert len(log_lines(node, "corrupt JPEG")) == 1


def test_png_bomb_is_refused_from_its_header_without_memory_growth(compressed):
    node, watcher, camera = compressed
    bomb = png_bomb(10_000, 10_000)
    assert len(bomb) < 150_000
    send_compressed_pair(camera, watcher)
    rss_before = process_rss_mb(node)
    before = camera.count(watcher, "malformed: too_large")
    for _ in range(3):
        camera.images.publish(compressed_msg(bomb, next_stamp(), format="png"))
    first, second = send_compressed_pair(camera, watcher)
    assert_correct_flow_from(camera, first, second)
    watcher.wait_until(
        lambda _: camera.count(watcher, "malformed: too_large") == before + 3, TIMEOUT_S
    )
    assert camera.count(watcher, "malformed: too_large") == before + 3
    # Decoding one would have taken 100 MB (gray) and more in conversions.
    assert process_rss_mb(node) - rss_before < 40.0
    assert_quiet_log(node)


# --- fuzzing the intake -----------------------------------------------------------------------

ENCODINGS = ["rgb8", "bgr8", "mono8", "mono16", "16UC1", "rgba8", "bgra8", "yuv422", "yuyv",
             "bayer_rggb8", "8UC1", "8UC3", "32FC1", "rgb42", ""]
FUZZ = settings(
    max_examples=4, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def raw_fields(draw) -> tuple:
    """Image fields near the valid ones (right length, step off by a little) and far off."""
    encoding = draw(st.sampled_from(ENCODINGS))
    width = draw(st.integers(min_value=0, max_value=420))
    height = draw(st.integers(min_value=0, max_value=320))
    step = width * draw(st.sampled_from([1, 2, 3, 4])) + draw(st.sampled_from([0, 0, 1, -1, 64]))
    length = max(step, 0) * height + draw(st.sampled_from([0, 0, 0, -1, 7]))
    return encoding, width, height, max(step, 0), max(length, 0), draw(st.integers(0, 1))


def account_for(camera: Camera, watcher: DiagnosticsWatcher, sent: int, before: dict) -> dict:
    def seen(_report) -> int:
        return (camera.count(watcher, "frames received") - before["received"]
                + camera.count(watcher, "malformed frames") - before["malformed"])

    report = watcher.wait_until(lambda r: seen(r) >= sent, TIMEOUT_S)
    assert seen(report) == sent, report
    return report


def assert_survived(node, watcher, camera: Camera, pair: tuple[int, int]) -> None:
    """Still running, no worker failure, a quiet log, and correct flow for the pair just sent."""
    assert_correct_flow_from(camera, *pair)
    assert node.process.poll() is None
    assert watcher.engine()[2]["worker exceptions"] == "0"
    assert_quiet_log(node)


def counters(camera: Camera, watcher: DiagnosticsWatcher) -> dict:
    return {"received": camera.count(watcher, "frames received"),
            "malformed": camera.count(watcher, "malformed frames")}


@FUZZ
@given(messages=st.lists(raw_fields(), min_size=25, max_size=25))
def test_fuzzed_raw_images_are_all_accounted_for_and_flow_recovers(raw, messages):
    node, watcher, cameras = raw
    front = cameras["front"]
    before = counters(front, watcher)
    for encoding, width, height, step, length, bigendian in messages:
        data = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8)
        front.images.publish(image_msg(data, encoding, width, height, step, next_stamp(),
                                       is_bigendian=bigendian))
    account_for(front, watcher, len(messages), before)
    assert_survived(node, watcher, front, send_pair(front, watcher))


FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, 1.0, FX, CX, -FX]),
)


@st.composite
def camera_infos(draw) -> CameraInfo:
    """CameraInfo near a real calibration (one field off) and far from any."""
    info = camera_info(
        draw(st.sampled_from([WIDTH, 2 * WIDTH, 0, 1])),
        draw(st.sampled_from([HEIGHT, 2 * HEIGHT, 0, 1])),
        distortion_model=draw(st.sampled_from(
            ["plumb_bob", "rational_polynomial", "equidistant", "", "none", "kannala"])),
        binning_x=draw(st.sampled_from([0, 1, 2, 1000])),
        binning_y=draw(st.sampled_from([0, 1, 2])),
    )
    if draw(st.booleans()):
        info.k = draw(st.lists(FLOATS, min_size=9, max_size=9))
    info.d = draw(st.lists(FLOATS, min_size=0, max_size=9))
    if draw(st.booleans()):
        info.p = draw(st.lists(FLOATS, min_size=12, max_size=12))
    info.roi.x_offset, info.roi.y_offset = draw(st.sampled_from([(0, 0), (10, 20)]))
    info.roi.width, info.roi.height = draw(st.sampled_from([(0, 0), (WIDTH, HEIGHT), (5, 5)]))
    return info


@FUZZ
@given(infos=st.lists(camera_infos(), min_size=25, max_size=25))
def test_fuzzed_camera_info_never_stops_flow_or_tracks(raw, infos):
    node, watcher, cameras = raw
    front = cameras["front"]
    rejected = front.count(watcher, "camera_info rejected")
    flows = front.settled_flow_count(watcher)
    last = None
    for info in infos:
        front.info.publish(info)
        last = next_stamp()
        front.images.publish(rgb_msg(textured_image(WIDTH, HEIGHT), last))
    report = watcher.wait_until(
        lambda _: front.count(watcher, "flows published") == flows + len(infos), TIMEOUT_S
    )
    assert front.count(watcher, "flows published") == flows + len(infos), report
    assert tracks_for(front, last) is not None
    assert rejected <= front.count(watcher, "camera_info rejected") <= rejected + len(infos)
    assert node.process.poll() is None
    assert watcher.engine()[2]["worker exceptions"] == "0"
    assert_quiet_log(node)
    front.info.publish(camera_info())  # leave a good calibration for whatever runs next


@st.composite
def compressed_payloads(draw) -> tuple[str, bytes]:
    """Valid JPEG/PNG frames of random sizes, then cut, bit-flipped or replaced by noise."""
    width = draw(st.integers(min_value=1, max_value=200))
    height = draw(st.integers(min_value=1, max_value=200))
    kind = draw(st.sampled_from(["jpeg", "png"]))
    image = textured_image(width, height)
    if draw(st.booleans()):
        image = np.ascontiguousarray(image[:, :, 0])
    ok, encoded = cv2.imencode(f".{'jpg' if kind == 'jpeg' else 'png'}", image)
    assert ok
    data = bytearray(encoded.tobytes())
    damage = draw(st.sampled_from(["none", "cut", "flip", "noise", "empty"]))
    if damage == "cut":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[position] ^= 0xFF
    elif damage == "noise":
        data = bytearray(draw(st.binary(min_size=1, max_size=300)))
    elif damage == "empty":
        data = bytearray()
    format = draw(st.sampled_from([kind, "rgb8; jpeg compressed bgr8", "16UC1; compressedDepth"]))
    return format, bytes(data)


@FUZZ
@given(payloads=st.lists(compressed_payloads(), min_size=25, max_size=25))
def test_fuzzed_compressed_images_are_all_accounted_for_and_flow_recovers(compressed, payloads):
    node, watcher, camera = compressed
    before = counters(camera, watcher)
    for format, data in payloads:
        camera.images.publish(compressed_msg(data, next_stamp(), format=format))
    account_for(camera, watcher, len(payloads), before)
    assert_survived(node, watcher, camera, send_compressed_pair(camera, watcher))
