"""What one bad input costs the running node: flow stall, recovery, memory, log lines.

The node runs as its own process (the installed executable) and is fed over
DDS by this script: a 640x480 camera at 30 Hz, into which one fault is
injected. Each huge-frame case runs twice in the same invocation, with the
default ``max_input_pixels`` and with the limit raised to its maximum (the
node's behaviour before the limit existed), so the numbers compare side by
side on the same, possibly busy, machine. The flooding cases send a bad
CameraInfo, a too-small frame or a corrupt JPEG with every frame and count
the node's log lines.

    python benchmarks/bench_faults.py [--out benchmarks/results] [--flood-s 20]

Prints a table and writes bench_faults.json. Needs the colcon build sourced.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path

import cv2
import numpy as np
import rclpy
import rclpy.executors
from neuflow_ros.msg import OpticalFlow
from rclpy.duration import Duration
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from neuflow_ros.imaging.synthetic_sequence import textured_image
from neuflow_ros.tools.graph_processes import node_command

# The damaged payloads the fault-injection tests send, so both measure the same inputs.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from damaged_images import damage_scan, png_bomb

WIDTH, HEIGHT, RATE_HZ = 640, 480, 30.0
SHIFT = (1.0, 0.5)
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                      reliability=ReliabilityPolicy.RELIABLE)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


class NodeUnderTest:
    """The node process, a camera publisher and a flow subscriber in this process."""

    def __init__(self, parameters: dict, compressed: bool, workdir: Path, label: str) -> None:
        self.namespace = f"/bench_faults_{os.getpid()}_{label}"
        params = workdir / f"{label}.yaml"
        params.write_text(json.dumps({"/**": {"ros__parameters": {
            "diagnostic_period": 1.0, "input_qos.reliability": "reliable",
            **parameters}}}))
        self.log_path = workdir / f"{label}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0",
                   ROS_LOG_DIR=str(workdir / "ros_log"))
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*node_command(), "--ros-args", "-r", f"__ns:={self.namespace}",
             "--params-file", str(params)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        self.compressed = compressed
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"bench_faults_{label}", context=self.context)
        kind, topic = (CompressedImage, "image/compressed") if compressed else (Image, "image")
        self.images = self.node.create_publisher(kind, f"{self.namespace}/{topic}", RELIABLE)
        self.info = self.node.create_publisher(
            CameraInfo, f"{self.namespace}/camera_info", RELIABLE
        )
        self.flows: list[tuple[float, int, int]] = []
        """(receive time, stamp, previous stamp) of every flow."""
        self.node.create_subscription(
            OpticalFlow, f"{self.namespace}/neuflow/flow", self._on_flow, RELIABLE
        )
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()
        self.frame_index = 0

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:
            return  # context shut down while closing

    def _on_flow(self, msg: OpticalFlow) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        previous = msg.previous_stamp.sec * 10**9 + msg.previous_stamp.nanosec
        self.flows.append((time.monotonic(), stamp, previous))

    def stamp(self) -> int:
        self.frame_index += 1
        return 10**12 + self.frame_index * 33_333_333

    def frame_msg(self, stamp: int):
        shift = (SHIFT[0] * self.frame_index, SHIFT[1] * self.frame_index)
        rgb = textured_image(WIDTH, HEIGHT, shift)
        if self.compressed:
            return self.compressed_msg(cv2.imencode(".jpg", rgb[:, :, ::-1])[1].tobytes(),
                                       stamp)
        return self.raw_msg(rgb.tobytes(), "rgb8", WIDTH, HEIGHT, WIDTH * 3, stamp)

    @staticmethod
    def raw_msg(data: bytes, encoding: str, width: int, height: int, step: int,
                stamp: int) -> Image:
        msg = Image(encoding=encoding, width=width, height=height, step=step)
        msg.data = array("B", data)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
        return msg

    @staticmethod
    def compressed_msg(data: bytes, stamp: int, format: str = "jpeg") -> CompressedImage:
        msg = CompressedImage(format=format)
        msg.data = array("B", data)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
        return msg

    def stream(self, seconds: float, extra=None) -> None:
        """Camera frames at RATE_HZ; ``extra(stamp)`` publishes something with each one."""
        period = 1.0 / RATE_HZ
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            stamp = self.stamp()
            if extra is not None:
                extra(stamp)
            self.images.publish(self.frame_msg(stamp))
            time.sleep(max(0.0, period - (time.monotonic() - started)))

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.flows:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"node produced no flow:\n{self.log_path.read_text()}")
            self.stream(0.5)

    def log_lines(self) -> list[str]:
        self._log.flush()
        return self.log_path.read_text(errors="replace").splitlines()

    def close(self) -> int | None:
        self.process.send_signal(2)
        try:
            code = self.process.wait(10.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = None
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._spinner.join(2.0)
        self._log.close()
        return code


def huge_frame_case(node: NodeUnderTest, publish_huge) -> dict:
    """Stream, inject one huge frame, stream on: stall, recovery and memory."""
    node.wait_ready()
    node.stream(3.0)
    rss_before = rss_mb(node.process.pid)
    injected_at = time.monotonic()
    huge_stamp = node.stamp()
    publish_huge(huge_stamp)
    # Until the node has it: otherwise the camera's next frames may push a frame this
    # large out of the writer's history before DDS has delivered all of its fragments.
    if not node.images.wait_for_all_acked(Duration(seconds=30)):
        raise RuntimeError("the huge frame was not delivered")
    published_s = time.monotonic() - injected_at
    node.stream(20.0)
    after = [flow for flow in node.flows if flow[0] >= injected_at]
    recovered = next((flow for flow in after if flow[2] > huge_stamp), None)
    times = [flow[0] for flow in node.flows if flow[0] >= injected_at - 1.0]
    gaps = np.diff(times) if len(times) > 1 else np.array([np.nan])
    return {
        "publish_s": round(published_s, 3),
        "recovery_s": None if recovered is None else round(recovered[0] - injected_at, 3),
        "longest_flow_gap_s": round(float(np.max(gaps)), 3),
        "flows_in_20_s": len(after),
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_mb(node.process.pid), 1),
    }


def flood_case(node: NodeUnderTest, extra, seconds: float) -> dict:
    """A bad message with every frame for ``seconds``: log lines per minute, flows kept."""
    node.wait_ready()
    lines_before = len(node.log_lines())
    flows_before = len(node.flows)
    started = time.monotonic()
    node.stream(seconds, extra)
    elapsed = time.monotonic() - started
    time.sleep(1.0)
    new_lines = node.log_lines()[lines_before:]
    return {
        "seconds": round(elapsed, 1),
        "frames_sent": int(elapsed * RATE_HZ),
        "flows_received": len(node.flows) - flows_before,
        "log_lines": len(new_lines),
        "log_lines_per_minute": round(len(new_lines) * 60.0 / elapsed, 1),
        "tracebacks": sum("Traceback" in line for line in new_lines),
    }


class Results(dict):
    """Case name -> numbers, printed as each case finishes (a later case may take minutes)."""

    def __setitem__(self, case: str, numbers: object) -> None:
        super().__setitem__(case, numbers)
        print(f"{case}: {numbers}", flush=True)


def run(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench_faults_"))
    results = Results()
    results["machine load (1 min) at start"] = os.getloadavg()[0]
    huge = np.random.default_rng(0).integers(0, 256, (6000, 8000), dtype=np.uint8).tobytes()
    bomb = png_bomb(10_000, 10_000)
    for label, limit in (("default_limit", None), ("no_limit", 268_435_456)):
        # Every frame processed in order, so the huge one reaches the worker (with
        # drop_frames true the next camera frame may replace it in the mailbox first).
        parameters = {"drop_frames": False}
        if limit is not None:
            parameters["max_input_pixels"] = limit
        node = NodeUnderTest(parameters, False, workdir, f"raw_{label}")
        try:
            results[f"raw 8000x6000 mono8, {label}"] = huge_frame_case(
                node, lambda stamp, n=node: n.images.publish(
                    n.raw_msg(huge, "mono8", 8000, 6000, 8000, stamp)))
        finally:
            node.close()
        node = NodeUnderTest({**parameters, "transport": "compressed"}, True, workdir,
                             f"png_{label}")
        try:
            results[f"PNG 10000x10000 ({len(bomb)} bytes), {label}"] = huge_frame_case(
                node, lambda stamp, n=node: n.images.publish(
                    n.compressed_msg(bomb, stamp, "png")))
        finally:
            node.close()
    if args.only_huge:
        return results
    mismatched = CameraInfo(width=2 * WIDTH, height=2 * HEIGHT, distortion_model="plumb_bob")
    mismatched.d = [0.0] * 5
    mismatched.k = [500.0, 0.0, 640.0, 0.0, 500.0, 480.0, 0.0, 0.0, 1.0]
    node = NodeUnderTest({"tracking.vins_features": True}, False, workdir, "flood_raw")
    try:
        results["CameraInfo at another resolution with every frame"] = flood_case(
            node, lambda stamp, n=node: n.info.publish(mismatched), args.flood_s)
        tiny = NodeUnderTest.raw_msg(bytes(11 * 11 * 3), "rgb8", 11, 11, 33, 0)
        results["11x11 frame with every frame"] = flood_case(
            node, lambda stamp, n=node: n.images.publish(tiny), args.flood_s)
    finally:
        node.close()
    node = NodeUnderTest({"transport": "compressed"}, True, workdir, "flood_jpeg")
    try:
        jpeg = cv2.imencode(".jpg", textured_image(WIDTH, HEIGHT))[1].tobytes()
        corrupt = NodeUnderTest.compressed_msg(damage_scan(jpeg), 0)
        results["corrupt JPEG with every frame"] = flood_case(
            node, lambda stamp, n=node: n.images.publish(corrupt), args.flood_s)
    finally:
        node.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--flood-s", type=float, default=20.0)
    parser.add_argument("--only-huge", action="store_true", help="skip the flooding cases")
    args = parser.parse_args()
    results = run(args)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_faults.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
