"""A stand-in camera driver: plays frames as sensor_msgs/Image at a fixed rate.

The demo and the benchmark measure the real graph, so the camera must be a
separate process publishing the way a driver does: sensor-data QoS (best
effort), stamped with the wall clock when the frame is sent, optionally with
camera_info. Frames come from the synthetic sequence with known motion, a
folder of images or a video; all are decoded and converted to messages
before the first one is sent, so decoding never disturbs the timing.

    neuflow-replay --topic /image --rate 30 --frames 150 --width 640 --height 480
    neuflow-replay --source flight.mp4 --topic /camera/image_raw --camera-info-topic \
/camera/camera_info
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from array import array
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, Image

from neuflow_ros.imaging.frame_sources import FrameSourceError, ImageFolderSource, VideoSource
from neuflow_ros.imaging.image_conversion import CameraImage
from neuflow_ros.imaging.synthetic_sequence import Motion, SyntheticSequence
from neuflow_ros.node.ros_messages import time_msg

ENCODINGS = ("rgb8", "bgr8", "mono8")
DEFAULT_SIZE = (640, 480)
SUBSCRIBER_TIMEOUT_S = 30.0
DRAIN_S = 0.5
"""Pause after the last frame so the middleware delivers it before the process exits."""


def synthetic_frames(width: int, height: int, count: int, motion: Motion) -> list[CameraImage]:
    sequence = SyntheticSequence(width, height, motion)
    return [CameraImage(sequence.frame(index), "rgb") for index in range(count)]


def recorded_frames(
    source: Path, count: int, rate_hz: float, size: tuple[int, int] | None
) -> list[CameraImage]:
    """Up to ``count`` decoded frames of a folder or video, resized to ``size`` when given."""
    frames = ImageFolderSource(source, fps=rate_hz) if source.is_dir() else VideoSource(source)
    images = []
    for frame in frames:
        if len(images) == count:
            break
        image = frame.decode()
        if size is not None and (image.pixels.shape[1], image.pixels.shape[0]) != size:
            image = CameraImage(
                cv2.resize(image.pixels, size, interpolation=cv2.INTER_AREA), image.color_order
            )
        images.append(image)
    if not images:
        raise FrameSourceError(f"{source} yielded no frames")
    return images


_CONVERSIONS = {
    ("rgb", "bgr8"): cv2.COLOR_RGB2BGR,
    ("bgr", "rgb8"): cv2.COLOR_BGR2RGB,
    ("rgb", "mono8"): cv2.COLOR_RGB2GRAY,
    ("bgr", "mono8"): cv2.COLOR_BGR2GRAY,
    ("mono", "rgb8"): cv2.COLOR_GRAY2RGB,
    ("mono", "bgr8"): cv2.COLOR_GRAY2BGR,
}


def encode(image: CameraImage, encoding: str) -> np.ndarray:
    """Pixels in the channel layout of ``encoding`` (8-bit only: what cameras usually send)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    pixels = image.pixels
    if pixels.dtype != np.uint8:
        raise ValueError(f"only 8-bit frames can be replayed, got {pixels.dtype}")
    conversion = _CONVERSIONS.get((image.color_order, encoding))
    if conversion is not None:
        pixels = cv2.cvtColor(pixels, conversion)
    return np.ascontiguousarray(pixels)


def image_message(pixels: np.ndarray, encoding: str, frame_id: str) -> Image:
    height, width = pixels.shape[:2]
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0,
                step=pixels.strides[0], data=array("B", pixels.tobytes()))
    msg.header.frame_id = frame_id
    return msg


def pinhole_info(width: int, height: int, frame_id: str) -> CameraInfo:
    """A distortion-free pinhole with a 53 degree horizontal field of view (fx = width)."""
    focal = float(width)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    msg.header.frame_id = frame_id
    msg.d = [0.0] * 5
    msg.k = [focal, 0.0, cx, 0.0, focal, cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [focal, 0.0, cx, 0.0, 0.0, focal, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def wait_for_subscriber(publisher: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while publisher.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no subscriber on {publisher.topic_name} after {timeout_s:g} s")
        time.sleep(0.02)


def publish_at_rate(
    node: Node, images: list[Image], info: CameraInfo | None, info_publisher: object,
    image_publisher: object, rate_hz: float, print_stamps: bool,
) -> int:
    """Sends every message on a fixed schedule (not sleep-after-send, which drifts)."""
    started = time.perf_counter()
    for index, msg in enumerate(images):
        stamp = time_msg(node.get_clock().now().nanoseconds)
        msg.header.stamp = stamp
        if print_stamps:
            print(f"frame {index} {stamp.sec * 1_000_000_000 + stamp.nanosec}", flush=True)
        if info is not None:
            info.header.stamp = stamp
            info_publisher.publish(info)
        image_publisher.publish(msg)
        time.sleep(max(0.0, started + (index + 1) / rate_hz - time.perf_counter()))
    return len(images)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="neuflow-replay",
        description="Publish a synthetic sequence with known motion, a folder of images or a "
                    "video as sensor_msgs/Image (sensor-data QoS, stamped at send time).",
    )
    parser.add_argument("--source", type=Path,
                        help="folder of images or video file (default: synthetic sequence)")
    parser.add_argument("--topic", default="image", help="image topic (default: image)")
    parser.add_argument("--camera-info-topic", help="also publish a pinhole CameraInfo here")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second")
    parser.add_argument("--frames", type=int, default=150, help="frames to send")
    parser.add_argument("--width", type=int, help="frame width (synthetic default 640; "
                        "recorded frames are resized when --width/--height are given)")
    parser.add_argument("--height", type=int, help="frame height (synthetic default 480)")
    parser.add_argument("--encoding", choices=ENCODINGS, default="rgb8")
    parser.add_argument("--frame-id", default="camera")
    motion = Motion()
    parser.add_argument("--dx", type=float, default=motion.dx, help="synthetic: px per frame")
    parser.add_argument("--dy", type=float, default=motion.dy, help="synthetic: px per frame")
    parser.add_argument("--rotation", type=float, default=motion.rotation_deg,
                        help="synthetic: degrees per frame about the image centre")
    parser.add_argument("--zoom", type=float, default=motion.zoom,
                        help="synthetic: scale factor per frame")
    parser.add_argument("--print-stamps", action="store_true",
                        help="print 'frame INDEX STAMP_NS' as each frame is sent")
    parser.add_argument("--wait-for-start", action="store_true",
                        help="after a subscriber matched, print 'ready' and wait for a line "
                             "on stdin before sending (lets a caller start other parts first)")
    args = parser.parse_args(argv)
    if not args.rate > 0.0:
        parser.error(f"--rate must be positive, got {args.rate}")
    if args.frames < 1:
        parser.error(f"--frames must be at least 1, got {args.frames}")
    if (args.width is None) != (args.height is None):
        parser.error("give both --width and --height, or neither")
    if args.width is not None and (args.width < 1 or args.height < 1):
        parser.error(f"size must be positive, got {args.width}x{args.height}")
    return args


def load_frames(args: argparse.Namespace) -> list[CameraImage]:
    if args.source is None:
        width, height = (args.width, args.height) if args.width else DEFAULT_SIZE
        motion = Motion(args.dx, args.dy, args.rotation, args.zoom)
        return synthetic_frames(width, height, args.frames, motion)
    size = (args.width, args.height) if args.width else None
    return recorded_frames(args.source, args.frames, args.rate, size)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        frames = load_frames(args)
        messages = [image_message(encode(f, args.encoding), args.encoding, args.frame_id)
                    for f in frames]
    except (FrameSourceError, ValueError) as error:
        print(f"neuflow-replay: {error}", file=sys.stderr)
        return 2
    del frames
    # Python's own SIGINT handling (KeyboardInterrupt) instead of rclpy's, which would
    # invalidate the context under a publish call; installed explicitly because a parent
    # started in the background may have left SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("neuflow_replay")
    try:
        image_publisher = node.create_publisher(Image, args.topic, qos_profile_sensor_data)
        info_publisher, info = None, None
        if args.camera_info_topic:
            info_publisher = node.create_publisher(
                CameraInfo, args.camera_info_topic, qos_profile_sensor_data
            )
            info = pinhole_info(messages[0].width, messages[0].height, args.frame_id)
        wait_for_subscriber(image_publisher, SUBSCRIBER_TIMEOUT_S)
        if args.wait_for_start:
            print("ready", flush=True)
            sys.stdin.readline()
        sent = publish_at_rate(node, messages, info, info_publisher, image_publisher,
                               args.rate, args.print_stamps)
        time.sleep(DRAIN_S)
        print(f"sent {sent}", flush=True)
        return 0
    except TimeoutError as error:
        print(f"neuflow-replay: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        # A second SIGINT (terminal Ctrl-C, then the graph runner stopping us) must not
        # interrupt the clean-up with a traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
