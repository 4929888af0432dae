"""A stereo pair the node cannot match, over DDS: counted, warned once, temporal outputs go on.

One node goes through the bad cases one after another: an uncalibrated
right CameraInfo (K all zero), no right CameraInfo, one without a
projection matrix, one without a baseline, right frames of another size,
and right frames stamped apart by more than stereo.max_stamp_difference;
then a good pair within the tolerance, which must match again.
"""

from __future__ import annotations

import itertools

import pytest
from neuflow_ros.msg import TrackArray
from ros_test_support import (
    DiagnosticsWatcher,
    NodeProcess,
    camera_count,
    rgb_msg,
    textured_image,
)
from sensor_msgs.msg import CameraInfo, Image
from stereo_rigs import camera_info_fields, rectified_rig

WIDTH, HEIGHT = 160, 120
DISPARITY = 5.0
PERIOD_NS = 50_000_000
FRAMES_PER_CASE = 4
TOLERANCE_NS = 2_000_000


def camera_info(fields: dict) -> CameraInfo:
    info = CameraInfo(width=fields["width"], height=fields["height"],
                      distortion_model=fields["distortion_model"])
    info.d, info.k, info.r, info.p = fields["d"], fields["k"], fields["r"], fields["p"]
    return info


def good_infos() -> dict[str, CameraInfo]:
    left, right = rectified_rig()
    return {"left": camera_info(camera_info_fields(left)),
            "right": camera_info(camera_info_fields(right))}


def uncalibrated_right() -> CameraInfo:
    """As a driver without a calibration file publishes it: the size, and K, D, R, P all zero."""
    _, right = rectified_rig()
    fields = camera_info_fields(right)
    fields["k"], fields["r"], fields["p"] = [0.0] * 9, [0.0] * 9, [0.0] * 12
    return camera_info(fields)


def right_without_projection() -> CameraInfo:
    """As a monocular calibration tool leaves it: K and D, but P all zero."""
    _, right = rectified_rig()
    fields = camera_info_fields(right)
    fields["p"] = [0.0] * 12
    return camera_info(fields)


def wider_right() -> CameraInfo:
    """A right camera of another resolution, with a CameraInfo of its own size."""
    _, right = rectified_rig()
    fields = camera_info_fields(right)
    fields["width"] = WIDTH + 32
    return camera_info(fields)


def right_without_baseline() -> CameraInfo:
    _, right = rectified_rig()
    fields = camera_info_fields(right)
    fields["p"][3] = 0.0
    return camera_info(fields)


class Rig:
    """Publishers of one stereo camera, sending frames of a scene at DISPARITY."""

    def __init__(self, harness, node) -> None:
        self.node = node
        self.images = {side: harness.publisher(Image, node.input_topic(f"{side}/image"),
                                               reliable=True) for side in ("left", "right")}
        self.infos = {side: harness.publisher(CameraInfo, node.input_topic(f"{side}/camera_info"),
                                              reliable=True) for side in ("left", "right")}
        for publisher in [*self.images.values(), *self.infos.values()]:
            assert harness.wait_for_subscribers(publisher), node.output()
        self.stamp_ns = 9_000_000_000
        self.index = 0

    def send(self, infos: dict[str, CameraInfo], right_offset_ns: int = 0,
             right_width: int = WIDTH) -> None:
        for side, info in infos.items():
            self.infos[side].publish(info)
        shift = (1.0 * self.index, 0.5 * self.index)
        left = textured_image(WIDTH, HEIGHT, shift)
        right = textured_image(right_width, HEIGHT, (shift[0] - DISPARITY, shift[1]))
        self.images["left"].publish(rgb_msg(left, self.stamp_ns, "left"))
        self.images["right"].publish(rgb_msg(right, self.stamp_ns + right_offset_ns, "right"))
        self.stamp_ns += PERIOD_NS
        self.index += 1


@pytest.fixture(scope="module")
def run(harness, tmp_path_factory):
    node = NodeProcess(
        tmp_path_factory.mktemp("stereo_bad_input"),
        {"cameras": ["left", "right"], "stereo.pair": ["left", "right"],
         "stereo.max_stamp_difference": TOLERANCE_NS / 1e9, "diagnostic_period": 0.2,
         "drop_frames": False, "tracking.min_distance": 10.0},
    )
    try:
        watcher = DiagnosticsWatcher(harness, node.fqn)
        assert watcher.wait_engine_ready(), node.output()
        tracks = harness.collect(TrackArray, node.topic("left/tracks"))
        assert harness.wait_for_publishers(node.topic("left/tracks")), node.output()
        rig = Rig(harness, node)
        good = good_infos()
        stereo_status = f"{node.fqn.lstrip('/')}: stereo left/right"
        reports = {}

        def settle(label: str) -> None:
            flows = camera_count(watcher, "flows published", "right")
            watcher.wait_until(
                lambda _: camera_count(watcher, "flows published", "right") > flows, 3.0
            )
            reports[label] = (watcher.latest().get(stereo_status, (0, "", {})),
                              {side: camera_count(watcher, "flows published", side)
                               for side in ("left", "right")},
                              len(tracks.messages),
                              watcher.camera("right")[2])

        cases = {
            "uncalibrated_right": lambda: rig.send({"left": good["left"],
                                                    "right": uncalibrated_right()}),
            "missing_camera_info": lambda: rig.send({"left": good["left"]}),
            "missing_projection": lambda: rig.send({"left": good["left"],
                                                    "right": right_without_projection()}),
            "zero_baseline": lambda: rig.send({"left": good["left"],
                                               "right": right_without_baseline()}),
            "size_mismatch": lambda: rig.send({"left": good["left"], "right": wider_right()},
                                              right_width=WIDTH + 32),
            "within_tolerance": lambda: rig.send(good, right_offset_ns=TOLERANCE_NS // 2),
            "apart": lambda: rig.send(good, right_offset_ns=5 * TOLERANCE_NS),
        }
        for label, send in cases.items():
            for _ in range(FRAMES_PER_CASE):
                processed = camera_count(watcher, "frames processed", "left")
                send()
                # Let the worker take the left frame before the next one (keeps cases apart).
                watcher.wait_until(
                    lambda _, before=processed: camera_count(
                        watcher, "frames processed", "left") > before, 2.0,
                )
            settle(label)
        yield reports, node
    finally:
        node.close()


def disabled(report, reason: str) -> int:
    return int(report[0][2].get(f"disabled: {reason}", "0"))


@pytest.mark.parametrize(
    "reason", ["missing_camera_info", "missing_projection", "zero_baseline", "size_mismatch"]
)
def test_each_bad_input_disables_matching_with_its_reason_counted(run, reason):
    reports, node = run
    report = reports[reason]
    assert disabled(report, reason) >= FRAMES_PER_CASE - 1, node.output()
    # Counted per frame pair of its case; a later case adds at most the one pair that
    # still met the previous case's calibration (a new CameraInfo takes a frame to apply).
    assert disabled(reports["apart"], reason) <= disabled(report, reason) + 1


@pytest.mark.parametrize(
    "reason", ["missing_camera_info", "missing_projection", "zero_baseline", "size_mismatch"]
)
def test_each_bad_input_is_warned_about_rate_limited(run, reason):
    _, node = run
    warnings = [line for line in node.output().splitlines()
                if "[WARN]" in line and f"({reason})" in line]
    # One per reason and 5 s, not one per frame pair.
    assert 1 <= len(warnings) < FRAMES_PER_CASE


def test_an_uncalibrated_right_camera_info_is_refused_by_its_camera_and_disables_matching(run):
    reports, node = run
    report = reports["uncalibrated_right"]
    right_camera = report[3]
    assert int(right_camera.get("camera_info rejected: bad_focal", "0")) >= FRAMES_PER_CASE - 1
    assert disabled(report, "missing_camera_info") >= FRAMES_PER_CASE - 1, node.output()
    assert int(report[0][2].get("frames matched", "0")) == 0


def test_temporal_flow_and_tracks_go_on_while_stereo_is_off(run):
    reports, _ = run
    labels = list(reports)
    for before, after in itertools.pairwise(labels):
        for side in ("left", "right"):
            assert reports[after][1][side] > reports[before][1][side]
        assert reports[after][2] > reports[before][2]


def test_stamps_within_the_tolerance_pair_and_match_again(run):
    reports, node = run
    before = int(reports["size_mismatch"][0][2].get("frames matched", "0"))
    after = int(reports["within_tolerance"][0][2].get("frames matched", "0"))
    assert after - before >= FRAMES_PER_CASE - 1, node.output()
    assert float(reports["within_tolerance"][0][2]["matches per frame p50"]) >= 5


def test_frames_stamped_apart_are_counted_unpaired_not_matched(run):
    reports, _ = run
    values = reports["apart"][0][2]
    for side in ("left", "right"):
        assert int(values[f"unpaired frames: {side}"]) >= FRAMES_PER_CASE - 1
    assert values["frames matched"] == reports["within_tolerance"][0][2]["frames matched"]
    assert reports["apart"][0][0] == 1  # WARN: frames without a partner


def test_no_worker_exception_on_any_bad_input(run):
    _, node = run
    assert "Traceback" not in node.output()
