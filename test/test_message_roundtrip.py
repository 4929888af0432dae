"""The generated messages cross a process boundary over real DDS."""
import math
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from neuflow_ros.msg import OpticalFlow, TrackArray  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402

PUBLISHER_SCRIPT = textwrap.dedent(
    """
    import math, sys, time
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    import numpy as np
    from neuflow_ros.msg import OpticalFlow, Track, TrackArray

    rclpy.init()
    node = rclpy.create_node('roundtrip_publisher')
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    publisher = node.create_publisher(TrackArray, 'roundtrip_tracks', qos)
    message = TrackArray()
    message.header.frame_id = 'camera_optical'
    message.header.stamp.sec = 1700000000
    message.header.stamp.nanosec = 250
    message.previous_stamp.sec = 1699999999
    message.previous_stamp.nanosec = 966666917
    for index in range(3):
        track = Track(id=2**40 + index, age=index + 1)
        track.x, track.y = 10.5 + index, 20.25
        track.previous_x, track.previous_y = 9.5 + index, 20.0
        track.velocity_x, track.velocity_y = 30.0, 7.5
        track.normalized_x = track.normalized_y = math.nan
        track.error = 0.125
        message.tracks.append(track)
    flow_publisher = node.create_publisher(OpticalFlow, 'roundtrip_flow', qos)
    flow = OpticalFlow()
    flow.header = message.header
    flow.previous_stamp = message.previous_stamp
    flow.flow.height, flow.flow.width, flow.flow.encoding = 3, 4, '32FC2'
    flow.flow.step = 4 * 2 * 4
    flow.flow.data = np.arange(24, dtype='<f4').tobytes()
    flow.input_width, flow.input_height = 8, 6
    deadline = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < deadline:
        publisher.publish(message)
        flow_publisher.publish(flow)
        rclpy.spin_once(node, timeout_sec=0.1)
    rclpy.shutdown()
    """
)


def test_custom_messages_cross_process_boundary():
    publisher = subprocess.Popen([sys.executable, '-c', PUBLISHER_SCRIPT, '30'])
    tracks: list[TrackArray] = []
    flows: list[OpticalFlow] = []
    rclpy.init()
    try:
        node = rclpy.create_node('roundtrip_subscriber')
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(TrackArray, 'roundtrip_tracks', tracks.append, qos)
        node.create_subscription(OpticalFlow, 'roundtrip_flow', flows.append, qos)
        deadline = time.monotonic() + 25.0
        while not (tracks and flows) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        rclpy.shutdown()
        publisher.terminate()
        publisher.wait(timeout=10)

    assert tracks, 'no TrackArray arrived from the publisher process'
    message = tracks[0]
    assert message.header.frame_id == 'camera_optical'
    assert (message.header.stamp.sec, message.header.stamp.nanosec) == (1700000000, 250)
    assert (message.previous_stamp.sec, message.previous_stamp.nanosec) == (1699999999, 966666917)
    assert [track.id for track in message.tracks] == [2**40, 2**40 + 1, 2**40 + 2]
    assert [track.age for track in message.tracks] == [1, 2, 3]
    assert message.tracks[2].x == pytest.approx(12.5)
    assert message.tracks[0].error == pytest.approx(0.125)
    assert math.isnan(message.tracks[1].normalized_x)

    assert flows, 'no OpticalFlow arrived from the publisher process'
    flow = flows[0]
    assert (flow.flow.height, flow.flow.width, flow.flow.encoding) == (3, 4, '32FC2')
    values = np.frombuffer(bytes(flow.flow.data), dtype='<f4').reshape(3, 4, 2)
    assert values[2, 3, 1] == 23.0
    assert (flow.input_width, flow.input_height) == (8, 6)
