"""Start-up failures and shutdown of the node process: exit codes and messages.

A node that cannot run must say why in one line and exit non-zero; a node
that is asked to stop (Ctrl-C, SIGTERM from a process manager) must stop its
worker and exit 0 within 2 s, without a traceback.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
from ros_test_support import (
    REPO_ROOT,
    DiagnosticsWatcher,
    NodeProcess,
    RosHarness,
    image_msg,
    textured_image,
)
from sensor_msgs.msg import Image

STARTUP_FAILURE_TIMEOUT_S = 30.0


def _expect_clean_failure(process: NodeProcess, *expected_fragments: str) -> str:
    code = process.wait_exit(STARTUP_FAILURE_TIMEOUT_S)
    output = process.output()
    process.close()
    assert code not in (None, 0), f"node did not fail; output:\n{output}"
    assert "Traceback" not in output, output
    for fragment in expected_fragments:
        assert fragment in output, output
    assert output.count("[FATAL]") == 1, output
    return output


def test_impossible_parameters_fail_with_one_clear_message(tmp_path):
    cases = {
        "max_frame_gap": ({"max_frame_gap": -1.0}, ("max_frame_gap",)),
        "transport": ({"transport": "carrier_pigeon"}, ("transport", "carrier_pigeon")),
        "inference_size": ({"inference_width": 320}, ("inference_width", "inference_height")),
        "cameras": ({"cameras": ["front", "front"]}, ("cameras", "front")),
        "engine": ({"inference_width": 100, "inference_height": 64}, ("multiple of 16",)),
    }
    # Start all at once: the failures are independent and start-up dominates the time.
    processes = {
        name: NodeProcess(tmp_path / name, parameters) for name, (parameters, _) in cases.items()
    }
    for name, (_, fragments) in cases.items():
        _expect_clean_failure(processes[name], *fragments)


def test_missing_and_corrupt_checkpoints_fail_naming_the_file(tmp_path):
    corrupt = tmp_path / "corrupt_weights.pth"
    corrupt.write_bytes(b"this is not a torch checkpoint" * 10)
    missing = tmp_path / "missing_weights.pth"
    processes = [
        (NodeProcess(tmp_path / "corrupt", {"backend": "neuflow_v2",
                                            "checkpoint": str(corrupt)}), corrupt),
        (NodeProcess(tmp_path / "missing", {"backend": "neuflow_v2",
                                            "checkpoint": str(missing)}), missing),
    ]
    for process, path in processes:
        _expect_clean_failure(process, str(path), "cannot start")


def test_shipped_config_file_loads_into_a_namespaced_node(harness, tmp_path):
    """The launch file passes config/neuflow.yaml; its values must reach a namespaced node.

    One value is changed in a copy (cameras) so that its effect proves the file was applied.
    """
    shipped = (REPO_ROOT / "config" / "neuflow.yaml").read_text()
    assert 'cameras: [""]' in shipped
    config = tmp_path / "neuflow.yaml"
    config.write_text(shipped.replace('cameras: [""]', 'cameras: ["front"]'))
    process = NodeProcess(tmp_path, extra_args=[
        "--params-file", str(config), "-p", "diagnostic_period:=0.2",
    ])
    try:
        watcher = DiagnosticsWatcher(harness, process.fqn)
        assert watcher.wait_engine_ready(), process.output()
        assert watcher.camera("front")[0] >= 0, watcher.latest()
    finally:
        process.close()


def _stream_until(harness: RosHarness, topic: str, stop: threading.Event) -> None:
    publisher = harness.publisher(Image, topic, reliable=True)
    rgb = textured_image(128, 96)
    stamp = 1_000_000_000_000
    while not stop.is_set():
        stamp += 33_000_000
        publisher.publish(image_msg(rgb, "rgb8", 128, 96, 128 * 3, stamp))
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_a_busy_node_within_two_seconds(harness, tmp_path, sig):
    process = NodeProcess(tmp_path, {"diagnostic_period": 0.2})
    stop = threading.Event()
    streamer = threading.Thread(
        target=_stream_until, args=(harness, process.input_topic("image"), stop)
    )
    try:
        watcher = DiagnosticsWatcher(harness, process.fqn)
        assert watcher.wait_engine_ready(), process.output()
        streamer.start()
        report = watcher.wait_until(
            lambda _: int(watcher.camera()[2].get("flows published", "0")) > 5, 10.0
        )
        assert int(watcher.camera()[2].get("flows published", "0")) > 5, report
        code, seconds = process.interrupt(sig, timeout_s=5.0)
    finally:
        stop.set()
        if streamer.is_alive():
            streamer.join(2.0)
        process.close()
    output = process.output()
    assert code == 0, output
    assert seconds < 2.0
    assert "Traceback" not in output, output
