"""`neuflow-demo`: the whole graph on this machine, no camera and no download needed.

A replay process plays a synthetic scene with known motion (or a folder of
images / a video), the real node computes flow, and this process receives it
and reports what a user wants to know first: does flow come out, how fast,
how late, how much is dropped, and how right it is. The picture shows the
frame pair of the last flow next to its colour rendering, so the result can
be judged by eye too.

Without a checkpoint the node is asked for NeuFlow v2 anyway: it falls back
to OpenCV DIS and prints its warning with the way to get the weights, which
is exactly what a new user on a robot would see.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import cv2
import numpy as np

from neuflow_ros.imaging.flow_visualization import flow_to_rgb
from neuflow_ros.imaging.image_conversion import CameraImage
from neuflow_ros.imaging.synthetic_sequence import SyntheticSequence
from neuflow_ros.tools.camera_replay import encode, recorded_frames
from neuflow_ros.tools.graph_run import GraphRunConfig, GraphRunError, GraphRunResult, run_graph

DEFAULT_OUTPUT = Path("demo_output")
PICTURE_NAME = "demo.png"
SUMMARY_NAME = "summary.json"
_LABEL_SCALE = 0.5


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="neuflow-demo",
        description="Run camera replay -> neuflow node -> consumer here and report frames, "
                    "rate, latency, drops and flow error; writes a picture and a JSON summary.",
    )
    parser.add_argument("source", nargs="?", type=Path,
                        help="folder of images or video file (default: synthetic scene with "
                             "known motion)")
    parser.add_argument("--checkpoint", type=Path, help="NeuFlow checkpoint (.pth)")
    parser.add_argument("--backend", default="neuflow_v2",
                        choices=("neuflow_v2", "neuflow_v1", "dis"),
                        help="without --checkpoint the node falls back from NeuFlow to DIS "
                             "and says so")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--rate", type=float, default=30.0, help="camera frames per second")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--no-tracking", action="store_true", help="dense flow only")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"folder for the picture, summary and logs (default: "
                             f"{DEFAULT_OUTPUT}/)")
    return parser.parse_args(argv)


def _frame_pair(config: GraphRunConfig, pair: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The two frames of ``pair`` as the replay sent them, in BGR for OpenCV."""
    if config.source is None:
        sequence = SyntheticSequence(config.width, config.height, config.motion)
        images = [CameraImage(sequence.frame(index), "rgb") for index in pair]
    else:
        frames = recorded_frames(config.source, pair[1] + 1, config.rate_hz,
                                 (config.width, config.height))
        images = [frames[index] for index in pair]
    first, second = (encode(image, "bgr8") for image in images)
    return first, second


def _labelled(image: np.ndarray, label: str) -> np.ndarray:
    """A copy with ``label`` in the top-left corner, dark outline so it reads on any colour."""
    out = image.copy()
    for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(out, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, _LABEL_SCALE, colour,
                    thickness, cv2.LINE_AA)
    return out


def _flow_bgr(flow: np.ndarray, size: tuple[int, int], max_magnitude: float) -> np.ndarray:
    colour = cv2.cvtColor(flow_to_rgb(flow, max_magnitude), cv2.COLOR_RGB2BGR)
    if (colour.shape[1], colour.shape[0]) != size:
        colour = cv2.resize(colour, size, interpolation=cv2.INTER_NEAREST)
    return colour


def _warped_back(later: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """The later frame pulled back along the flow: looks like the earlier one if flow is right."""
    height, width = later.shape[:2]
    if flow.shape[:2] != (height, width):
        # Vectors are in input pixels at any published resolution: only the grid changes.
        flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return cv2.remap(later, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT)


def render_picture(result: GraphRunResult) -> np.ndarray:
    """2x2 BGR panels of the frame size: earlier frame, later frame, node flow, and the true
    flow (synthetic scene) or the later frame warped back by the node's flow (recorded)."""
    if result.sample_flow is None or result.sample_pair is None:
        raise GraphRunError("no flow was received, so there is nothing to draw")
    config = result.config
    size = (config.width, config.height)
    earlier, later = _frame_pair(config, result.sample_pair)
    flow = result.sample_flow
    first_index, second_index = result.sample_pair
    if config.source is None:
        sequence = SyntheticSequence(config.width, config.height, config.motion)
        truth = sequence.true_flow(first_index, second_index)
        scale = float(np.hypot(truth[..., 0], truth[..., 1]).max()) * 1.5
        fourth = _labelled(_flow_bgr(truth, size, scale), "true flow")
    else:
        finite = np.hypot(flow[..., 0], flow[..., 1])
        finite = finite[np.isfinite(finite)]
        scale = max(float(np.percentile(finite, 99)) if finite.size else 1.0, 1e-3)
        fourth = _labelled(_warped_back(later, flow), "later frame warped back by flow")
    top = np.hstack([_labelled(earlier, f"frame {first_index}"),
                     _labelled(later, f"frame {second_index}")])
    node_flow = _labelled(_flow_bgr(flow, size, scale), f"flow from node ({result.backend})")
    return np.vstack([top, np.hstack([node_flow, fourth])])


def _number(value: float | None, unit: str, digits: int = 1) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f} {unit}"


def report_lines(result: GraphRunResult) -> list[str]:
    config = result.config
    motion = config.motion
    source = str(config.source) if config.source else (
        f"synthetic scene moving {motion.dx:g}, {motion.dy:g} px, {motion.rotation_deg:g} deg, "
        f"zoom {motion.zoom:g} per frame"
    )
    error = ("n/a (no known motion for recorded frames)" if result.flow_error_px is None
             else f"{result.flow_error_px:.3f} px median end-point error in the image interior")
    return [
        f"camera: {result.frames_sent} frames {config.width}x{config.height} at "
        f"{config.rate_hz:g} Hz ({source})",
        f"node: {result.backend} on {result.device}; received {result.frames_received_by_node} "
        f"frames, dropped {result.frames_dropped} while busy, published "
        f"{result.flows_published} flows",
        f"consumer: {result.flows_received} flows at {_number(result.output_rate_hz, 'Hz')}",
        f"latency (camera stamp -> flow received): p50 {_number(result.latency_p50_ms, 'ms')}, "
        f"p95 {_number(result.latency_p95_ms, 'ms')}, max {_number(result.latency_max_ms, 'ms')}",
        f"engine {_number(result.inference_ms, 'ms')} per pair, node overhead "
        f"{_number(result.node_overhead_ms, 'ms')} per frame",
        f"flow error vs known motion: {error}",
    ]


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so run_graph stops the processes it started."""
    def interrupt(*_: object) -> NoReturn:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        config = GraphRunConfig(
            width=args.width, height=args.height, rate_hz=args.rate, frames=args.frames,
            backend=args.backend, checkpoint=args.checkpoint, device=args.device,
            tracking=not args.no_tracking, source=args.source,
            output_dir=args.output / "logs",
        )
    except ValueError as error:
        print(f"neuflow-demo: {error}", file=sys.stderr)
        return 2
    _stop_on_sigterm()
    print(f"neuflow-demo: starting replay, node and consumer (logs in {config.output_dir})",
          flush=True)
    try:
        result = run_graph(config)
        picture = render_picture(result)
    except GraphRunError as error:
        print(f"neuflow-demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("neuflow-demo: interrupted", file=sys.stderr)
        return 130
    picture_path = args.output / PICTURE_NAME
    summary_path = args.output / SUMMARY_NAME
    if not cv2.imwrite(str(picture_path), picture):
        print(f"neuflow-demo: cannot write {picture_path}", file=sys.stderr)
        return 1
    summary_path.write_text(json.dumps(result.summary(), indent=2) + "\n")
    for warning in result.warnings:
        print(f"warning: {warning}")
    for line in report_lines(result):
        print(line)
    print(f"picture: {picture_path}  summary: {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
