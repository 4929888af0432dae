"""neuflow-bag: flow and feature tracks for recorded flights, offline and without ROS.

Tuning a flow front end on the robot is slow and not repeatable; a recorded
bag can be processed again and again with other settings and compared. The
tool processes every frame in order (nothing is dropped, unlike the live
node) and writes a new bag with the original topics plus ``<prefix>/flow``,
``<prefix>/tracks`` and optionally ``<prefix>/flow_vis``, stamped like the
images. A folder of images or a video file gives a folder of flow files
(.flo or KITTI PNG), visualizations and a tracks CSV instead; with
``--no-flow-files`` only the tracks CSV and the index.

Exit codes: 0 done, 2 unusable input or options (one line on stderr),
130 interrupted with Ctrl-C (the output holds what was done and is valid).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from neuflow_ros.flow.dis_backend import DIS_PRESETS
from neuflow_ros.flow.engine import BACKENDS, EngineConfig, FlowEngine, create_engine
from neuflow_ros.imaging.frame_sources import (
    IMAGE_SUFFIXES,
    FrameSourceError,
    ImageFolderSource,
    VideoSource,
    within_window,
)
from neuflow_ros.imaging.image_conversion import ImageFormatError
from neuflow_ros.tools.flow_folder_writer import FLOW_FORMATS, INDEX_FILE, FlowFolderWriter
from neuflow_ros.tools.offline_pipeline import OfflineFlowPipeline, PipelineCounts
from neuflow_ros.tools.progress_report import ProgressReport
from neuflow_ros.tools.size_argument import size_argument
from neuflow_ros.tracking.stereo_matching import StereoMatchConfig
from neuflow_ros.tracking.tracker import FeatureTracker, TrackerConfig

PROGRAM = "neuflow-bag"
EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
BAG_SUFFIXES = (".mcap", ".db3")
MAX_WARNINGS = 20
"""Per-frame warnings shown before the rest are only counted: a bag with a
broken camera can have thousands of bad frames."""


class ToolError(Exception):
    """Unusable input or options; main() prints the message as one line and exits 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Compute optical flow and feature tracks for a rosbag2 (sqlite3 or mcap), "
        "a folder of images or a video file, processing every frame in order.",
    )
    parser.add_argument("input", type=Path,
                        help="rosbag2 directory or .mcap/.db3 file, image folder, or video file")
    parser.add_argument("output", type=Path,
                        help="new bag (bag input) or output folder (images or video input)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUTPUT if it is a bag or a folder this tool wrote")

    bag = parser.add_argument_group("bag input")
    bag.add_argument("--image-topic", help="sensor_msgs/Image or CompressedImage topic")
    bag.add_argument("--camera-info-topic",
                     help="sensor_msgs/CameraInfo topic (normalized track coordinates)")
    bag.add_argument("--right-image-topic",
                     help="stereo: the right camera's image topic; left tracks (--image-topic) "
                     "get their right-image match and <prefix>/disparity is written")
    bag.add_argument("--right-camera-info-topic",
                     help="stereo: the right camera's CameraInfo (with --camera-info-topic for "
                     "the left; both needed to match)")
    bag.add_argument("--max-stamp-difference", type=float, default=0.0,
                     help="stereo: seconds a left and a right stamp may differ and still pair "
                     "(default: %(default)s, identical stamps)")
    bag.add_argument("--epipolar-threshold", type=float, default=1.0,
                     help="stereo: largest row difference of a match, rectified px "
                     "(default: %(default)s)")
    bag.add_argument("--output-prefix", default="/neuflow",
                     help="namespace of the new topics (default: %(default)s)")
    bag.add_argument("--storage", choices=("sqlite3", "mcap"),
                     help="output bag storage (default: that of the input)")

    files = parser.add_argument_group("image folder / video input")
    files.add_argument("--fps", type=float,
                       help="frame rate for stamps (images not named by nanosecond stamp; "
                       "default for video: the rate the file declares)")
    files.add_argument("--flow-format", choices=tuple(FLOW_FORMATS), default="flo",
                       help="flow file format (default: %(default)s)")
    files.add_argument("--no-flow-files", action="store_true",
                       help="write no flow files, only tracks.csv and flow_index.csv "
                       "(2.9 MB less per 752x480 frame)")

    engine = parser.add_argument_group("flow engine")
    engine.add_argument("--backend", choices=BACKENDS, default="dis",
                        help="default: %(default)s (NeuFlow without --checkpoint falls back "
                        "to DIS with a warning)")
    engine.add_argument("--checkpoint", help="NeuFlow checkpoint (.pth path or http(s) URL)")
    engine.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    engine.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    engine.add_argument("--inference-size", type=size_argument, metavar="WxH",
                        help="compute at this size (multiples of 16); flow is written at "
                        "the image size")
    engine.add_argument("--dis-preset", choices=tuple(DIS_PRESETS), default="fast")
    engine.add_argument("--threads", type=int, help="CPU threads for torch and OpenCV")

    output = parser.add_argument_group("output")
    output.add_argument("--flow-vis", action="store_true",
                        help="also write flow visualizations")
    output.add_argument("--flow-vis-max", type=float, default=0.0,
                        help="flow magnitude (px) shown fully saturated; 0 = per-frame maximum")
    output.add_argument("--no-tracks", action="store_true", help="do not track features")
    output.add_argument("--max-tracks", type=int, default=300)
    output.add_argument("--min-distance", type=float, default=20.0,
                        help="minimum distance (px) between tracked features")
    output.add_argument("--fb-threshold", type=float, default=1.0,
                        help="forward-backward error (px) above which a track is dropped "
                        "(with --forward-backward)")
    detector = TrackerConfig()
    output.add_argument("--forward-backward", action="store_true",
                        help="also compute the backward flow and drop tracks failing the "
                        "forward-backward check (a second flow computation per frame)")
    output.add_argument("--residual-ratio", type=float, default=detector.residual_ratio,
                        help="drop tracks whose patch residual exceeds this multiple of the "
                        "frame's median; 0 = off (default: %(default)s)")
    output.add_argument("--quality-level", type=float, default=detector.quality_level,
                        help="Shi-Tomasi quality relative to the best corner of the searched "
                        "tile (default: %(default)s)")
    output.add_argument("--block-size", type=int, default=detector.block_size,
                        help="Shi-Tomasi covariation window in pixels (default: %(default)s)")
    output.add_argument("--detection-tile", type=int, default=detector.detection_tile,
                        help="search new corners per tile of about this many pixels, the "
                        "tiles with the most room first (default: %(default)s)")
    output.add_argument("--detection-interval", type=int, default=detector.detection_interval,
                        help="search new corners every n-th frame (default: %(default)s)")
    output.add_argument("--max-frame-gap", type=float, default=1.0,
                        help="seconds between frames above which flow restarts; 0 = no limit")
    output.add_argument("--start", type=float,
                        help="seconds after the start of the recording to begin at")
    output.add_argument("--end", type=float,
                        help="seconds after the start of the recording to stop at")
    output.add_argument("--progress-interval", type=float, default=10.0,
                        help="seconds between progress lines when stderr is not a terminal")
    return parser


class _Run:
    """State shared by the input kinds: console, pipeline and the summary."""

    def __init__(self, args: argparse.Namespace, report: ProgressReport) -> None:
        self.report = report
        self.warnings = 0
        self.logger = logging.Logger(PROGRAM)
        self.logger.addHandler(_ReportHandler(report))
        self.engine = _create_engine(args, self.logger)
        tracker = None
        if not args.no_tracks:
            try:
                tracker = FeatureTracker(
                    TrackerConfig(max_tracks=args.max_tracks, min_distance=args.min_distance,
                                  fb_threshold=args.fb_threshold,
                                  forward_backward=args.forward_backward,
                                  residual_ratio=args.residual_ratio,
                                  quality_level=args.quality_level, block_size=args.block_size,
                                  detection_tile=args.detection_tile,
                                  detection_interval=args.detection_interval)
                )
            except ValueError as error:
                raise ToolError(str(error)) from error
        try:
            self.pipeline = OfflineFlowPipeline(self.engine, tracker, args.max_frame_gap,
                                                self.warn)
        except ValueError as error:
            raise ToolError(str(error)) from error
        self.vis_max = args.flow_vis_max if args.flow_vis_max > 0 else None

    def warn(self, text: str) -> None:
        self.warnings += 1
        if self.warnings <= MAX_WARNINGS:
            self.report.message(f"{PROGRAM}: warning: {text}")
        if self.warnings == MAX_WARNINGS:
            self.report.message(f"{PROGRAM}: further warnings are only counted in the summary")

    def summarize(self, interrupted: bool, output: Path) -> None:
        self.report.finish()
        counts: PipelineCounts = self.pipeline.counts
        elapsed = self.report.elapsed_s
        rate = counts.frames / elapsed if elapsed > 0 else 0.0
        reasons = ", ".join(f"{name} {n}" for name, n in counts.resets.items() if n)
        resets = f"{counts.total_resets} resets" + (f" ({reasons})" if reasons else "")
        state = "interrupted, partial output" if interrupted else "done"
        self.report.message(
            f"{PROGRAM}: {state}: {counts.frames} frames, {counts.pairs} flow pairs, {resets}, "
            f"{counts.errors} errors, {self.warnings} warnings, {elapsed:.1f} s "
            f"({rate:.1f} frames/s, {self.engine.backend} on {self.engine.device}) -> {output}"
        )


class _ReportHandler(logging.Handler):
    """Routes the engine's log records (e.g. the DIS fallback warning) through the report."""

    def __init__(self, report: ProgressReport) -> None:
        super().__init__(logging.INFO)
        self._report = report

    def emit(self, record: logging.LogRecord) -> None:
        self._report.message(f"{PROGRAM}: {record.levelname.lower()}: {record.getMessage()}")


def _create_engine(args: argparse.Namespace, logger: logging.Logger) -> FlowEngine:
    try:
        config = EngineConfig(
            backend=args.backend, checkpoint=args.checkpoint, device=args.device,
            precision=args.precision, inference_size=args.inference_size,
            dis_preset=args.dis_preset, num_threads=args.threads,
        )
        return create_engine(config, allow_dis_fallback=True, logger=logger)
    except (ValueError, RuntimeError, OSError) as error:
        # RuntimeError covers CheckpointError, which lives with torch.
        raise ToolError(f"cannot create the flow engine: {error}") from error


def _input_kind(path: Path) -> str:
    if not path.exists():
        raise ToolError(f"input {path} does not exist")
    if path.is_dir():
        return "bag" if (path / "metadata.yaml").is_file() else "folder"
    if path.suffix.lower() in BAG_SUFFIXES:
        return "bag"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise ToolError(f"input {path} is a single image; pass the folder that holds the images")
    return "video"


def _check_window(args: argparse.Namespace) -> None:
    if args.start is not None and args.start < 0:
        raise ToolError(f"--start must not be negative, got {args.start}")
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise ToolError(f"--end ({args.end}) must be after --start ({args.start})")


def _prepare_output(output: Path, overwrite: bool, marker: str) -> None:
    """Make room for the output; only ever deletes a bag or a folder this tool wrote."""
    if not output.exists():
        return
    if not overwrite:
        raise ToolError(f"output {output} exists; pass --overwrite to replace it")
    if not output.is_dir() or not (not any(output.iterdir()) or (output / marker).is_file()):
        raise ToolError(
            f"refusing to replace {output}: it is not an empty folder or an output of {PROGRAM} "
            f"(no {marker})"
        )
    shutil.rmtree(output)


def _run_bag(args: argparse.Namespace, report: ProgressReport) -> int:
    if not args.image_topic:
        raise ToolError("bag input needs --image-topic")
    try:
        # rosbags is needed for bag input only; image folders and videos work without it.
        from neuflow_ros.tools.bag_io import BagError
        from neuflow_ros.tools.bag_runner import BagInput, BagOutputOptions, process_bag
        from neuflow_ros.tools.bag_stereo import BagStereo
    except ImportError as error:
        raise ToolError(
            f"bag input needs the 'rosbags' Python package (pip install rosbags): {error}"
        ) from error
    if args.fps is not None or args.flow_format != "flo" or args.no_flow_files:
        raise ToolError(
            "--fps, --flow-format and --no-flow-files apply to image folder and video input only"
        )
    if args.right_camera_info_topic and not args.right_image_topic:
        raise ToolError("--right-camera-info-topic needs --right-image-topic")
    try:
        match_config = StereoMatchConfig(epipolar_threshold=args.epipolar_threshold,
                                         consistency_threshold=args.fb_threshold)
    except ValueError as error:
        raise ToolError(str(error)) from error
    try:
        source = BagInput(args.input, args.image_topic, args.camera_info_topic, args.start,
                          args.end, args.right_image_topic, args.right_camera_info_topic)
    except BagError as error:
        raise ToolError(str(error)) from error
    try:
        run = _Run(args, report)
        _prepare_output(args.output, args.overwrite, "metadata.yaml")
        options = BagOutputOptions(args.output, args.storage, args.output_prefix,
                                   args.flow_vis, not args.no_tracks, run.vis_max,
                                   round(args.max_stamp_difference * 1e9))
        stereo = BagStereo(match_config, run.warn)
        interrupted = process_bag(source, options, run.pipeline, report, run.warn, stereo)
    except BagError as error:
        raise ToolError(str(error)) from error
    finally:
        source.close()
    run.summarize(interrupted, args.output)
    if source.stereo:
        report.message(f"{PROGRAM}: stereo: {stereo.summary() or 'nothing paired'}")
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def _run_files(args: argparse.Namespace, kind: str, report: ProgressReport) -> int:
    if args.image_topic or args.camera_info_topic or args.right_image_topic:
        raise ToolError("--image-topic, --camera-info-topic and --right-image-topic apply to "
                        "bag input only")
    if args.no_flow_files and args.no_tracks and not args.flow_vis:
        raise ToolError("--no-flow-files with --no-tracks (and no --flow-vis) leaves nothing "
                        "to write")
    try:
        source = ImageFolderSource(args.input, args.fps) if kind == "folder" else \
            VideoSource(args.input, args.fps)
    except FrameSourceError as error:
        raise ToolError(str(error)) from error
    run = _Run(args, report)
    _prepare_output(args.output, args.overwrite, INDEX_FILE)
    args.output.mkdir(parents=True)
    writer = FlowFolderWriter(args.output, args.flow_format, args.flow_vis,
                              not args.no_tracks, run.vis_max, not args.no_flow_files)
    windowed = args.start is not None or args.end is not None
    report.start(None if windowed else source.frame_count or None)
    interrupted = False
    try:
        for frame in within_window(source, None, args.start, args.end):
            output = run.pipeline.process(frame)
            if output is not None:
                writer.write(output)
            report.update(run.pipeline.counts.frames)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        writer.close()
    run.summarize(interrupted, args.output)
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def run_tool(args: argparse.Namespace, report: ProgressReport) -> int:
    """Process INPUT into OUTPUT as parsed from the command line; ToolError for bad input."""
    _check_window(args)
    if args.input.resolve() == args.output.resolve():
        raise ToolError("OUTPUT must differ from INPUT")
    kind = _input_kind(args.input)
    if kind == "bag":
        return _run_bag(args, report)
    return _run_files(args, kind, report)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    report = ProgressReport(sys.stderr, args.progress_interval)
    try:
        return run_tool(args, report)
    except (ToolError, ImageFormatError) as error:
        # One line: library messages (YAML parsers, ...) can span several.
        report.message(f"{PROGRAM}: error: {' '.join(str(error).split())}")
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
