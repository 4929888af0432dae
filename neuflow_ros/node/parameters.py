"""The flow node's parameters: declarations, validation and the settings snapshot.

Every parameter is declared with a description, its valid range and whether
it can change at run time, so `ros2 param describe` tells users what they may
do. Values that need a restart (engine, topics, QoS) are read-only. Start-up
validation turns impossible combinations into one ConfigurationError whose
message names the parameter, instead of a failure deep in the engine later.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..imaging.compressed_image import jpeg_decoder_available
from ..tracking.stereo_matching import StereoMatchConfig
from ..tracking.tracker import TrackerConfig

BACKENDS = ("dis", "neuflow_v2", "neuflow_v1")
TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")
PUBLISH_RESOLUTIONS = ("input", "inference")
DIS_PRESETS = ("ultrafast", "fast", "medium")
PRECISIONS = ("fp32", "fp16")

_CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*$")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")


class ConfigurationError(ValueError):
    """A parameter value the node cannot run with; the message names the parameter."""


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any
    description: str
    read_only: bool = True
    integer_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None


PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec(
        "cameras", [""],
        "Camera names. [''] = one camera on 'image'/'camera_info' with outputs ~/flow; "
        "['front', 'down'] = topics front/image, down/image, ... and outputs ~/front/flow, ...",
    ),
    ParameterSpec(
        "transport", "raw",
        "raw: sensor_msgs/Image on <image>; compressed: sensor_msgs/CompressedImage "
        "on <image>/compressed (JPEG or PNG).",
        choices=TRANSPORTS,
    ),
    ParameterSpec(
        "input_qos.reliability", "best_effort",
        "Reliability of the image subscriptions. best_effort matches every publisher.",
        choices=RELIABILITIES,
    ),
    ParameterSpec(
        "input_qos.depth", 5, "History depth of the image subscriptions.",
        integer_range=(1, 1000),
    ),
    ParameterSpec(
        "output_qos.reliability", "reliable",
        "Reliability of ~/flow and ~/flow_vis. reliable makes large messages arrive "
        "even without a shared-memory transport profile.",
        choices=RELIABILITIES,
    ),
    ParameterSpec(
        "output_qos.depth", 2, "History depth of ~/flow and ~/flow_vis.",
        integer_range=(1, 100),
    ),
    ParameterSpec(
        "backend", "dis",
        "Flow engine: dis (OpenCV DIS, CPU, no weights), neuflow_v2 or neuflow_v1.",
        choices=BACKENDS,
    ),
    ParameterSpec(
        "checkpoint", "",
        "NeuFlow checkpoint file (.pth); empty = none (falls back to DIS if allowed).",
    ),
    ParameterSpec(
        "checkpoint_sha256", "", "Expected SHA-256 of the checkpoint; empty = not checked.",
    ),
    ParameterSpec("cache_dir", "", "Directory for cached converted weights; empty = default."),
    ParameterSpec(
        "allow_dis_fallback", True,
        "Run DIS (with a warning) when a NeuFlow backend has no checkpoint; false = fail.",
    ),
    ParameterSpec("device", "auto", "auto, cpu, cuda or cuda:N."),
    ParameterSpec(
        "precision", "fp32",
        "Network precision: fp32, or fp16 on CUDA (with device auto and no CUDA: fp32).",
        choices=PRECISIONS,
    ),
    ParameterSpec(
        "inference_width", 0,
        "Width the engine computes at, a multiple of 16; 0 (with inference_height 0) = "
        "camera width.",
        integer_range=(0, 8192),
    ),
    ParameterSpec(
        "inference_height", 0,
        "Height the engine computes at, a multiple of 16; 0 (with inference_width 0) = "
        "camera height.",
        integer_range=(0, 8192),
    ),
    ParameterSpec(
        "iters_s16", 1, "NeuFlow refinement iterations at 1/16 scale.", integer_range=(1, 32),
    ),
    ParameterSpec(
        "iters_s8", 8, "NeuFlow refinement iterations at 1/8 scale.", integer_range=(1, 32),
    ),
    ParameterSpec(
        "fold_batchnorm", True, "Fold BatchNorm into convolutions at load time (faster).",
    ),
    ParameterSpec(
        "streaming", True,
        "NeuFlow: reuse each frame's backbone output for the camera's next pair (same flow, "
        "half the backbone work).",
    ),
    ParameterSpec(
        "cuda_graphs", True,
        "NeuFlow on CUDA: replay the network from CUDA graphs (one per input shape; a failed "
        "capture turns them off for the engine, with one error).",
    ),
    ParameterSpec("dis_preset", "fast", "DIS preset: ultrafast, fast or medium.",
                  choices=DIS_PRESETS),
    ParameterSpec(
        "num_threads", 0,
        "Process-wide torch and OpenCV CPU threads; 0 = leave the libraries' defaults.",
        integer_range=(0, 256),
    ),
    ParameterSpec(
        "queue_size", 30,
        "With drop_frames false: frames queued per camera before the callback waits "
        "(up to 0.5 s) and then the oldest is dropped and counted.",
        integer_range=(1, 1000),
    ),
    ParameterSpec(
        "max_input_pixels", 12_582_912,
        "Frames with more pixels (width x height) are dropped as malformed: too_large "
        "before anything is decoded or allocated. 12582912 = 4096x3072 covers 4K cameras.",
        integer_range=(1, 268_435_456),
    ),
    ParameterSpec(
        "diagnostic_period", 1.0, "Seconds between /diagnostics messages.",
        float_range=(0.1, 60.0),
    ),
    ParameterSpec(
        "tracking.enabled", True,
        "Publish sparse feature tracks (~/tracks, ~/tracks_vis).",
    ),
    ParameterSpec(
        "tracking.max_tracks", 300, "Most live tracks per camera.", integer_range=(1, 10000),
    ),
    ParameterSpec(
        "tracking.min_distance", 20.0, "Minimum distance between tracks in pixels.",
        float_range=(1.0, 1000.0),
    ),
    ParameterSpec(
        "tracking.quality_level", 0.01,
        "Shi-Tomasi quality relative to the best corner of the searched tile (a third of it "
        "at half resolution, where images of 320 px and more on each side are searched).",
        float_range=(0.0001, 1.0),
    ),
    ParameterSpec(
        "tracking.block_size", 3,
        "Shi-Tomasi covariation window (pixels, odd); 3 finds more corners on fine texture "
        "than 7 at equal accuracy.",
        integer_range=(1, 31),
    ),
    ParameterSpec(
        "tracking.detection_tile", 192,
        "New corners are searched tile by tile (tiles of about this many pixels), the tiles "
        "with the most room first, until enough are found; small tiles keep the detector's "
        "buffers in cache.",
        integer_range=(16, 8192),
    ),
    ParameterSpec(
        "tracking.detection_interval", 1,
        "Search new corners every n-th frame (1 = every frame); larger saves detection time "
        "but leaves gaps unfilled between searches.",
        integer_range=(1, 1000),
    ),
    ParameterSpec(
        "tracking.border_margin", 4.0, "Tracks closer than this to the image border die.",
        float_range=(0.0, 1000.0),
    ),
    ParameterSpec(
        "tracking.forward_backward", False,
        "Also compute the backward flow (a second flow computation per frame) and reject "
        "tracks whose round trip misses by more than fb_threshold. Off by default: the "
        "photometric check rejects wrong tracks better; turn on with tracking.refine false.",
    ),
    ParameterSpec(
        "tracking.fb_threshold", 1.0,
        "Forward-backward error (pixels) above which a track is rejected (with "
        "tracking.forward_backward).",
        float_range=(0.01, 1000.0),
    ),
    ParameterSpec(
        "tracking.residual_ratio", 2.5,
        "With tracking.refine: reject a track whose patch residual (mean absolute gray-level "
        "difference to its window in the previous frame) exceeds this multiple of the "
        "frame's median; 0 = off.",
        float_range=(0.0, 100.0),
    ),
    ParameterSpec(
        "tracking.ransac", True, "Reject tracks inconsistent with the epipolar geometry.",
    ),
    ParameterSpec(
        "tracking.ransac_threshold", 1.0, "Epipolar RANSAC threshold in pixels.",
        float_range=(0.01, 100.0),
    ),
    ParameterSpec(
        "tracking.refine", True,
        "Refine each flow-advanced track with Lucas-Kanade on its patch (removes flow drift).",
    ),
    ParameterSpec(
        "tracking.vins_features", False,
        "Also publish ~/features (sensor_msgs/PointCloud in the VINS-Fusion feature layout; "
        "needs camera_info). Track ids then wrap below 2^24 so float32 keeps them exact.",
    ),
    ParameterSpec(
        "stereo.pair", [""],
        "Two of 'cameras' forming a calibrated stereo pair, left first (e.g. ['left', "
        "'right']): right-image matches for the left tracks, camera id 1 entries in "
        "~/features and ~/disparity. [''] = off.",
    ),
    ParameterSpec(
        "stereo.max_stamp_difference", 0.0,
        "Seconds two stereo frames' stamps may differ and still be one instant; 0 = "
        "identical stamps only.",
        float_range=(0.0, 1.0),
    ),
    ParameterSpec(
        "stereo.epipolar_threshold", 1.0,
        "Largest row difference (rectified pixels) of a left-right match.",
        float_range=(0.01, 100.0),
    ),
    ParameterSpec(
        "drop_frames", True,
        "true: a frame arriving while the engine is busy replaces the waiting one "
        "(counted as dropped); false: every frame is processed in order.",
        read_only=False,
    ),
    ParameterSpec(
        "max_frame_gap", 1.0,
        "Seconds between two frames above which no flow is computed and the camera's "
        "history restarts; 0 = no limit.",
        read_only=False, float_range=(0.0, 3600.0),
    ),
    ParameterSpec(
        "publish_resolution", "input",
        "input: flow at camera resolution; inference: at the engine's grid (cheaper). "
        "Vectors are in camera pixels either way.",
        read_only=False, choices=PUBLISH_RESOLUTIONS,
    ),
    ParameterSpec(
        "flow_vis_max_magnitude", 0.0,
        "Flow magnitude (camera pixels) shown fully saturated in ~/flow_vis; 0 = per-frame "
        "maximum.",
        read_only=False, float_range=(0.0, 10000.0),
    ),
    ParameterSpec(
        "diagnostics.input_timeout", 2.0,
        "WARN when a camera sent nothing for this many seconds; 0 = never.",
        read_only=False, float_range=(0.0, 3600.0),
    ),
    ParameterSpec(
        "diagnostics.min_output_ratio", 0.5,
        "WARN when the flow rate falls below this fraction of the image rate.",
        read_only=False, float_range=(0.0, 1.0),
    ),
    ParameterSpec(
        "diagnostics.stall_timeout", 10.0,
        "ERROR when one engine compute call (not a warm-up) has been running for this many "
        "seconds (a hung GPU); 0 = never.",
        read_only=False, float_range=(0.0, 3600.0),
    ),
)

SPECS_BY_NAME = {spec.name: spec for spec in PARAMETERS}


def descriptor_for(spec: ParameterSpec) -> ParameterDescriptor:
    description = spec.description
    if spec.choices:
        description += f" One of: {', '.join(spec.choices)}."
    descriptor = ParameterDescriptor(description=description, read_only=spec.read_only)
    if spec.integer_range is not None:
        low, high = spec.integer_range
        descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=1)]
    if spec.float_range is not None:
        low, high = spec.float_range
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=low, to_value=high, step=0.0)
        ]
    if spec.choices:
        descriptor.additional_constraints = f"one of: {', '.join(spec.choices)}"
    return descriptor


@dataclass(frozen=True)
class RuntimeSettings:
    """Parameters that may change while the node runs."""

    drop_frames: bool
    max_frame_gap_s: float
    publish_resolution: str
    flow_vis_max_magnitude: float | None
    input_timeout_s: float
    min_output_ratio: float
    stall_timeout_s: float


@dataclass(frozen=True)
class StereoSettings:
    """The stereo pair's cameras, stamp tolerance and match checks."""

    left: str
    right: str
    max_stamp_difference_ns: int
    match: StereoMatchConfig


@dataclass(frozen=True)
class NodeSettings:
    """Validated snapshot of all parameters at start-up."""

    cameras: tuple[str, ...]
    transport: str
    input_reliable: bool
    input_depth: int
    output_reliable: bool
    output_depth: int
    backend: str
    checkpoint: str | None
    checkpoint_sha256: str | None
    cache_dir: str | None
    allow_dis_fallback: bool
    device: str
    precision: str
    inference_size: tuple[int, int] | None
    iters_s16: int
    iters_s8: int
    fold_batchnorm: bool
    streaming: bool
    cuda_graphs: bool
    dis_preset: str
    num_threads: int | None
    queue_size: int
    max_input_pixels: int
    diagnostic_period_s: float
    tracking: TrackerConfig | None
    vins_features: bool
    stereo: StereoSettings | None
    runtime: RuntimeSettings


def check_choice(name: str, value: Any) -> None:
    """Raise ConfigurationError when a string parameter is not one of its choices."""
    choices = SPECS_BY_NAME[name].choices
    if choices and value not in choices:
        raise ConfigurationError(
            f"parameter '{name}' must be one of {', '.join(choices)}; got '{value}'"
        )


def read_runtime_settings(get: Callable[[str], Any]) -> RuntimeSettings:
    check_choice("publish_resolution", get("publish_resolution"))
    vis_max = float(get("flow_vis_max_magnitude"))
    return RuntimeSettings(
        drop_frames=bool(get("drop_frames")),
        max_frame_gap_s=float(get("max_frame_gap")),
        publish_resolution=get("publish_resolution"),
        flow_vis_max_magnitude=vis_max if vis_max > 0.0 else None,
        input_timeout_s=float(get("diagnostics.input_timeout")),
        min_output_ratio=float(get("diagnostics.min_output_ratio")),
        stall_timeout_s=float(get("diagnostics.stall_timeout")),
    )


def read_settings(get: Callable[[str], Any]) -> NodeSettings:
    """Validate all parameter values (``get(name)`` returns one) into a NodeSettings."""
    for spec in PARAMETERS:
        if spec.choices:
            check_choice(spec.name, get(spec.name))
    if get("transport") == "compressed" and not jpeg_decoder_available():
        raise ConfigurationError(
            "parameter 'transport' compressed needs the simplejpeg package for strict JPEG "
            "decoding: pip install simplejpeg==1.9.0"
        )
    device = get("device")
    if not _DEVICE.match(device):
        raise ConfigurationError(
            f"parameter 'device' must be auto, cpu, cuda or cuda:N; got '{device}'"
        )
    width, height = get("inference_width"), get("inference_height")
    if (width == 0) != (height == 0):
        raise ConfigurationError(
            "parameters 'inference_width' and 'inference_height' must both be 0 (camera "
            f"size) or both be positive; got {width}x{height}"
        )
    num_threads = get("num_threads")
    cameras = validate_camera_names(get("cameras"))
    return NodeSettings(
        cameras=cameras,
        transport=get("transport"),
        input_reliable=get("input_qos.reliability") == "reliable",
        input_depth=get("input_qos.depth"),
        output_reliable=get("output_qos.reliability") == "reliable",
        output_depth=get("output_qos.depth"),
        backend=get("backend"),
        checkpoint=get("checkpoint") or None,
        checkpoint_sha256=get("checkpoint_sha256") or None,
        cache_dir=get("cache_dir") or None,
        allow_dis_fallback=get("allow_dis_fallback"),
        device=device,
        precision=get("precision"),
        inference_size=(width, height) if width else None,
        iters_s16=get("iters_s16"),
        iters_s8=get("iters_s8"),
        fold_batchnorm=get("fold_batchnorm"),
        streaming=get("streaming"),
        cuda_graphs=get("cuda_graphs"),
        dis_preset=get("dis_preset"),
        num_threads=num_threads or None,
        queue_size=get("queue_size"),
        max_input_pixels=get("max_input_pixels"),
        diagnostic_period_s=get("diagnostic_period"),
        tracking=read_tracker_config(get),
        vins_features=bool(get("tracking.enabled")) and bool(get("tracking.vins_features")),
        stereo=read_stereo_settings(get, cameras),
        runtime=read_runtime_settings(get),
    )


def read_tracker_config(get: Callable[[str], Any]) -> TrackerConfig | None:
    """The tracker's configuration, or None when tracking is disabled."""
    if not get("tracking.enabled"):
        return None
    try:
        return TrackerConfig(
            max_tracks=get("tracking.max_tracks"),
            min_distance=get("tracking.min_distance"),
            quality_level=get("tracking.quality_level"),
            block_size=get("tracking.block_size"),
            detection_tile=get("tracking.detection_tile"),
            detection_interval=get("tracking.detection_interval"),
            border_margin=get("tracking.border_margin"),
            forward_backward=get("tracking.forward_backward"),
            fb_threshold=get("tracking.fb_threshold"),
            residual_ratio=get("tracking.residual_ratio"),
            ransac_enabled=get("tracking.ransac"),
            ransac_threshold=get("tracking.ransac_threshold"),
            refine=get("tracking.refine"),
        )
    except ValueError as error:
        raise ConfigurationError(f"invalid tracking parameters: {error}") from error


def read_stereo_settings(
    get: Callable[[str], Any], cameras: Sequence[str]
) -> StereoSettings | None:
    """The stereo pair, or None when ``stereo.pair`` is empty."""
    pair = tuple(get("stereo.pair"))
    if pair in ((), ("",)):
        return None
    if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(cameras):
        raise ConfigurationError(
            f"parameter 'stereo.pair' must name two different cameras of 'cameras' "
            f"{list(cameras)}, left first; got {list(pair)}"
        )
    consistency = get("tracking.fb_threshold") if get("tracking.enabled") else 1.0
    return StereoSettings(
        left=pair[0],
        right=pair[1],
        max_stamp_difference_ns=round(float(get("stereo.max_stamp_difference")) * 1e9),
        match=StereoMatchConfig(
            epipolar_threshold=float(get("stereo.epipolar_threshold")),
            consistency_threshold=float(consistency),
            refine=bool(get("tracking.refine")),
        ),
    )


def validate_camera_names(names: Sequence[str]) -> tuple[str, ...]:
    """[''] (or []) means one unnamed camera; otherwise distinct relative topic names."""
    names = tuple(names)
    if names in ((), ("",)):
        return ("",)
    for name in names:
        if not _CAMERA_NAME.match(name):
            raise ConfigurationError(
                f"parameter 'cameras': '{name}' is not a valid camera name (letters, digits, "
                "'_' and '/' between parts, starting with a letter); use [''] for one "
                "unnamed camera"
            )
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigurationError(f"parameter 'cameras' lists {duplicates} more than once")
    return names
