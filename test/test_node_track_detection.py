"""The detector and check parameters of the real node over DDS: declared, taken, in effect.

A user tunes `tracking.block_size`, `tracking.detection_tile`,
`tracking.detection_interval`, `tracking.forward_backward` and
`tracking.residual_ratio` in a params file and checks them with
`ros2 param get/describe`; the tracks on ~/tracks must then follow them. The
camera sees a texture sliding right by a whole pixel step per frame, so tracks
leave the image every frame and leave gaps that only a detection pass fills.
"""

from __future__ import annotations

import itertools
import math

import pytest
from neuflow_ros.msg import TrackArray
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import DescribeParameters, GetParameters
from ros_test_support import (
    DiagnosticsWatcher,
    NodeProcess,
    prime_flow,
    rgb_msg,
    send_processed,
    stamp_ns,
    textured_image,
)
from sensor_msgs.msg import Image

WIDTH, HEIGHT = 160, 120
STEP_X = 4.0
PERIOD_NS = 50_000_000
FIRST_STAMP_NS = 5_000_000_000
"""Seconds after the priming frames (stamps from 1 s): the gap restarts the tracks."""
FRAMES = 10
INTERVAL = 3
SETTINGS = {
    "tracking.block_size": 5,
    "tracking.detection_tile": 48,
    "tracking.detection_interval": INTERVAL,
    "tracking.forward_backward": True,
    "tracking.residual_ratio": 3.0,
}
DECLARED_RANGES = {
    "tracking.block_size": (1, 31),
    "tracking.detection_tile": (16, 8192),
    "tracking.detection_interval": (1, 1000),
    "tracking.residual_ratio": (0.0, 100.0),
}
VALUE_FIELDS = {
    ParameterType.PARAMETER_INTEGER: "integer_value",
    ParameterType.PARAMETER_DOUBLE: "double_value",
    ParameterType.PARAMETER_BOOL: "bool_value",
}


def sequence_tracks(messages: list[TrackArray]) -> list[TrackArray] | None:
    """The track arrays of the test sequence once all have arrived (not the priming ones)."""
    later = [m for m in messages if stamp_ns(m.header.stamp) >= FIRST_STAMP_NS]
    return later if len(later) >= FRAMES - 1 else None


@pytest.fixture(scope="module")
def run(harness, tmp_path_factory):
    node = NodeProcess(
        tmp_path_factory.mktemp("node_track_detection"),
        {"diagnostic_period": 0.2, "drop_frames": False, "tracking.min_distance": 10.0,
         "tracking.max_tracks": 80, **SETTINGS},
    )
    try:
        watcher = DiagnosticsWatcher(harness, node.fqn)
        assert watcher.wait_engine_ready(), node.output()
        tracks = harness.collect(TrackArray, node.topic("tracks"))
        camera = harness.publisher(Image, node.input_topic("image"), reliable=True)
        assert harness.wait_for_subscribers(camera), node.output()
        # Tracks are built only for a matched subscriber: prime until one arrives.
        prime_flow(tracks, camera, itertools.count(1_000_000_000, PERIOD_NS), node,
                   (WIDTH, HEIGHT))
        for k in range(FRAMES):
            image = textured_image(WIDTH, HEIGHT, (STEP_X * k, 0.0))
            send_processed(camera, watcher, rgb_msg(image, FIRST_STAMP_NS + k * PERIOD_NS))
        received = tracks.wait_for(sequence_tracks, 15.0)
        yield harness, node, received or []
    finally:
        node.close()


def test_node_reports_the_values_it_was_given_and_their_ranges(run):
    harness, node, _ = run
    names = list(SETTINGS)
    values = harness.call(
        GetParameters, f"{node.fqn}/get_parameters", GetParameters.Request(names=names)
    ).values
    reported = {
        name: getattr(value, VALUE_FIELDS[value.type])
        for name, value in zip(names, values, strict=True)
    }
    assert reported == SETTINGS
    assert all(type(reported[name]) is type(SETTINGS[name]) for name in names), reported
    descriptors = harness.call(
        DescribeParameters, f"{node.fqn}/describe_parameters",
        DescribeParameters.Request(names=names),
    ).descriptors
    for descriptor in descriptors:
        assert descriptor.read_only, descriptor.name
        ranges = list(descriptor.integer_range) + list(descriptor.floating_point_range)
        declared = tuple((r.from_value, r.to_value) for r in ranges)
        expected = DECLARED_RANGES.get(descriptor.name)
        assert declared == (() if expected is None else (expected,)), descriptor.name


def test_new_tracks_appear_only_on_every_interval_th_frame(run):
    _, node, received = run
    assert len(received) == FRAMES - 1, node.output()
    # Message k covers frames k -> k + 1; the first detection was on frame 0.
    new_per_frame = {
        k + 1: sum(1 for track in message.tracks if track.age == 1)
        for k, message in enumerate(received)
    }
    off_frames = {frame: new for frame, new in new_per_frame.items() if frame % INTERVAL}
    assert set(off_frames.values()) == {0}, new_per_frame
    # Tracks slide out on the right, so every search has gaps to fill.
    on_frames = [new for frame, new in new_per_frame.items() if frame % INTERVAL == 0]
    assert all(new > 0 for new in on_frames), new_per_frame


def test_forward_backward_on_gives_every_carried_track_its_round_trip_error(run):
    _, _, received = run
    carried = [track for message in received for track in message.tracks if track.age > 1]
    assert carried
    # The error is NaN unless the node computed the backward flow.
    assert all(math.isfinite(track.error) and track.error <= 1.0 for track in carried)
