"""A 640x480 rgb8 camera at 30 Hz in another process: no frame may vanish silently.

Runs with the node's default parameters and the Fast DDS profile that
launch/neuflow.launch.py applies to every process (config/fastdds_profile.xml;
without it, Fast DDS loses most best-effort 640x480 frames between processes).
Accounting: every frame the node receives either yields flow, is counted as
dropped, or is the first frame of the stream (nothing to pair with); and it
must receive every frame the camera process sent. There is no warm-up
allowance: frames that arrive while the engine starts are counted as dropped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from neuflow_ros.msg import OpticalFlow
from ros_test_support import (
    DiagnosticsWatcher,
    NodeProcess,
    RosHarness,
    qos,
    stamp_ns,
)

from neuflow_ros.tools.graph_processes import graph_environment

FRAMES = 150
RATE_HZ = 30.0


@pytest.fixture(scope="module")
def harness():
    saved = dict(os.environ)
    os.environ.update(graph_environment())  # read when the participant is created
    try:
        ros = RosHarness("test_node_load")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    yield ros
    ros.close()


def test_camera_at_30_hz_is_fully_accounted_for(harness, tmp_path):
    # Deep histories: with the default output depth (2) a test process starved of CPU
    # for a few frames loses flow between the two histories, which says nothing about
    # the node, whose own accounting is checked below. 100 frames is the most allowed.
    node = NodeProcess(tmp_path / "node", {"diagnostic_period": 0.5, "output_qos.depth": 100},
                       extra_env=graph_environment())
    received: list[int] = []
    lock = threading.Lock()

    def on_flow(msg: OpticalFlow) -> None:
        with lock:
            received.append(stamp_ns(msg.header.stamp))

    harness.node.create_subscription(OpticalFlow, node.topic("flow"), on_flow, qos(True, 100))
    watcher = DiagnosticsWatcher(harness, node.fqn)
    try:
        assert watcher.wait_engine_ready(), node.output()
        env = {**os.environ, **graph_environment(),
               "ROS_LOG_DIR": str(tmp_path / "camera_log")}
        camera = subprocess.run(
            [sys.executable, "-m", "neuflow_ros.tools.camera_replay", "--topic",
             node.input_topic("image"), "--width", "640", "--height", "480",
             "--rate", str(RATE_HZ), "--frames", str(FRAMES)],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert camera.returncode == 0, camera.stderr
        sent = int(camera.stdout.split("sent ")[1].split()[0])

        def settled(_report) -> bool:
            values = watcher.camera()[2]
            flows = int(values.get("flows published", 0))
            accounted = (flows + int(values.get("frames dropped", 0))
                         + int(values.get("resets", 0)) + 1)
            return accounted >= sent and len(received) >= flows

        watcher.wait_until(settled, 10.0)
        time.sleep(0.6)  # one more diagnostics period
        values = watcher.camera()[2]
        engine_values = watcher.engine()[2]
    finally:
        node.close()
    frames_received = int(values["frames received"])
    flows = int(values["flows published"])
    dropped = int(values["frames dropped"])
    resets = int(values["resets"])
    print(f"\nload: sent {sent}, node received {frames_received}, flows {flows}, dropped "
          f"{dropped}, resets {resets}, flows at the subscriber {len(received)}; latency p50 "
          f"{values['latency p50 (ms)']} ms p95 {values['latency p95 (ms)']} ms; callback p50 "
          f"{values['callback time p50 (ms)']} ms, publish p50 {values['publish time p50 (ms)']} "
          f"ms, tracking p50 {values['tracking time p50 (ms)']} ms, queue wait p50 "
          f"{values['queue wait p50 (ms)']} ms, inference p50 "
          f"{engine_values['inference time p50 (ms)']} ms")
    assert sent == FRAMES
    assert frames_received == sent, "frames were lost between the camera process and the node"
    assert flows + dropped + resets + 1 == frames_received
    assert resets == 0
    assert len(received) == flows, "published flow did not reach the subscriber"
    assert flows >= sent // 2, "the node kept up with less than half of a 30 Hz camera"
    assert float(values["latency p95 (ms)"]) < 500.0
