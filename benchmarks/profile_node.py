"""Where the flow node spends its time per frame, apart from the flow computation itself.

The issue's target is the node's own overhead (everything except computing
the flow) under 5 ms per 640x480 frame. This script runs the node's real
per-frame code in one process, without a camera or DDS round trip: the
subscription callback on a real sensor_msgs/Image, the engine call (timed
separately, it is not overhead), then the worker's publishing step of a real
node, whose /diagnostics split tracking time from message building and
publishing. With --profile it also prints the hottest functions of the
publishing step (cProfile), to see which copies and conversions remain.

    python benchmarks/profile_node.py --frames 120 [--no-tracking] [--listeners] [--profile]

Without --listeners nobody subscribes, so the node skips the optional messages
(~/tracks, ~/flow_vis, ~/tracks_vis); --listeners subscribes to ~/flow and
~/tracks in this process, as a VIO front end would.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from array import array

import numpy as np
import rclpy
from neuflow_ros.msg import OpticalFlow, TrackArray
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from neuflow_ros.flow.engine import EngineConfig, create_engine
from neuflow_ros.flow.flow_types import FramePair
from neuflow_ros.node.flow_node import NeuFlowNode
from neuflow_ros.node.flow_worker import CameraFlow
from neuflow_ros.node.frame_intake import raw_frame
from neuflow_ros.node.ros_messages import stamp_ns

PERIOD_NS = 33_333_333


def _texture(width: int, height: int, shift: tuple[float, float]) -> np.ndarray:
    """Smooth random texture translated by ``shift``: flow with trackable corners."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs -= shift[0]
    ys -= shift[1]
    value = np.zeros((height, width), np.float32)
    for wavelength, angle in ((9.0, 0.3), (15.0, 1.2), (23.0, 2.1), (41.0, 2.8)):
        k = 2.0 * np.pi / wavelength
        value += np.sin(k * (np.cos(angle) * xs + np.sin(angle) * ys))
    gray = (value - value.min()) / (value.max() - value.min()) * 215.0 + 20.0
    return np.repeat(gray[:, :, None], 3, axis=2).astype(np.uint8)


def _image_msg(rgb: np.ndarray, stamp: int) -> Image:
    height, width = rgb.shape[:2]
    msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
    msg.data = array("B", rgb.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    msg.header.frame_id = "camera"
    return msg


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(values) * 1e3:6.2f} ms  p95 {p95 * 1e3:6.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--no-tracking", action="store_true")
    parser.add_argument("--listeners", action="store_true",
                        help="subscribe to ~/flow and ~/tracks (messages are built and sent)")
    parser.add_argument("--profile", action="store_true", help="cProfile the publishing step")
    args = parser.parse_args()

    rclpy.init()
    node = NeuFlowNode(parameter_overrides=[
        Parameter("tracking.enabled", value=not args.no_tracking),
        Parameter("num_threads", value=1),
    ])
    if args.listeners:
        node.create_subscription(OpticalFlow, "~/flow", lambda _: None, 2)
        node.create_subscription(TrackArray, "~/tracks", lambda _: None, 2)
    engine = create_engine(EngineConfig(backend="dis", dis_preset="fast", num_threads=1))
    backward = not args.no_tracking
    motion = [(0.7 * k, 0.4 * k) for k in range(8)]
    messages = [
        _image_msg(_texture(args.width, args.height, motion[k % len(motion)]),
                   1_000_000_000 + k * PERIOD_NS)
        for k in range(args.frames)
    ]
    decode_s: list[float] = []
    compute_s: list[float] = []
    publish_s: list[float] = []
    profiler = cProfile.Profile()
    previous = None
    for msg in messages:
        started = time.perf_counter()
        frame = raw_frame("", stamp_ns(msg.header.stamp), msg.header.frame_id, msg.encoding,
                          msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)
        decode_s.append(time.perf_counter() - started)
        if previous is not None:
            started = time.perf_counter()
            result = engine.compute(
                [FramePair(previous.pixels, frame.pixels, frame.color_order)],
                backward=backward, output_grid="input",
            )[0]
            compute_s.append(time.perf_counter() - started)
            flow = CameraFlow("", previous, frame, result, "input")
            started = time.perf_counter()
            if args.profile:
                profiler.runcall(node.pipeline.publish_flows, [flow])
            else:
                node.pipeline.publish_flows([flow])
            publish_s.append(time.perf_counter() - started)
        previous = frame
    reported = dict(node.health.report(time.monotonic())[1].values)
    print(f"{args.width}x{args.height} rgb8, DIS fast, tracking "
          f"{'off' if args.no_tracking else 'on'}, listeners {'yes' if args.listeners else 'no'}, "
          f"{args.frames} frames")
    print(f"  callback (decode)          {_ms(decode_s)}")
    print(f"  flow computation           {_ms(compute_s)}   (not overhead)")
    print(f"  worker publishing step     {_ms(publish_s)}   (publish + tracking)")
    for stage in ("publish time", "tracking time"):
        print(f"    {stage + ' (diagnostics)':<28} p50 {reported[stage + ' p50 (ms)']:>6} ms  "
              f"p95 {reported[stage + ' p95 (ms)']:>6} ms")
    if args.profile:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    node.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
