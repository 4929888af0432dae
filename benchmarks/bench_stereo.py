"""Stereo matching quality and cost on a synthetic rectified pair with known disparity.

A textured plane at a known disparity moves by a known step per frame, seen
by a rectified stereo pair (K = P, baseline in the right P). Per frame the
script runs what the node runs for a stereo pair: one engine call with the
two temporal pairs and, with stereo, the left->right pair; the left
tracker; the right matches; the dense disparity. It prints and saves

- matched features per frame (and per left track), right-position error
  against the truth, dense-disparity error and valid fraction;
- per-frame time without stereo (one engine call, two temporal pairs, no
  backward flow: the node's default) and with stereo (the same call with
  the left->right and right->left pairs, plus the right matches), measured
  alternately in one run, and their ratio; the dense disparity, which the
  node computes only while ~/disparity has a subscriber, is timed on its own.

    PYTHONPATH=. python benchmarks/bench_stereo.py --size 640x480 --frames 30
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import cv2
import numpy as np

from neuflow_ros.flow.engine import EngineConfig, FramePair, create_engine
from neuflow_ros.imaging.synthetic_sequence import interior_margin, textured_image
from neuflow_ros.node.flow_worker import stereo_frame_pairs, stereo_result
from neuflow_ros.tools.size_argument import size_argument
from neuflow_ros.tracking.camera_model import CameraModel
from neuflow_ros.tracking.stereo_geometry import StereoRig
from neuflow_ros.tracking.stereo_matching import (
    StereoMatchConfig,
    StereoTrackMatcher,
    dense_disparity,
)
from neuflow_ros.tracking.tracker import FeatureTracker, TrackerConfig

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
STEP = (1.25, -0.5)
BASELINE = 0.12


def rectified_rig(width: int, height: int) -> StereoRig:
    focal = 0.9 * width
    k = [focal, 0.0, (width - 1) / 2, 0.0, focal, (height - 1) / 2, 0.0, 0.0, 1.0]

    def model(tx: float) -> CameraModel:
        p = [k[0], 0.0, k[2], tx, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
        return CameraModel.from_camera_info("plumb_bob", [0.0] * 5, k, width, height, p=p,
                                            r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0])

    return StereoRig.from_models(model(0.0), model(-focal * BASELINE))


def frames(width: int, height: int, disparity: float, index: int) -> tuple[np.ndarray, ...]:
    shift = (STEP[0] * index, STEP[1] * index)
    return (textured_image(width, height, shift),
            textured_image(width, height, (shift[0] - disparity, shift[1])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=size_argument, default=(640, 480), metavar="WxH")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--disparity", type=float, default=12.4)
    parser.add_argument("--dis-preset", default="fast")
    parser.add_argument("--backend", default="dis", choices=("dis", "neuflow_v2", "neuflow_v1"))
    parser.add_argument("--checkpoint", help="NeuFlow checkpoint (random weights time the same)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS / "stereo.json")
    args = parser.parse_args()
    width, height = args.size
    cv2.setNumThreads(args.threads)
    engine = create_engine(EngineConfig(backend=args.backend, checkpoint=args.checkpoint,
                                        device=args.device if args.backend != "dis" else "auto",
                                        dis_preset=args.dis_preset, num_threads=args.threads),
                           allow_dis_fallback=False)
    rig = rectified_rig(width, height)
    config = StereoMatchConfig()
    tracker = FeatureTracker(TrackerConfig(min_distance=15.0))  # no forward-backward check
    matcher = StereoTrackMatcher(config)
    margin = interior_margin(width, height) + int(np.ceil(args.disparity))

    times: dict[str, list[float]] = {
        "without stereo": [], "with stereo": [], "right matches": [],
        "disparity image (only while subscribed)": [],
    }
    matched, tracked, right_errors, disparity_errors, valid = [], [], [], [], []
    previous = frames(width, height, args.disparity, 0)
    tracker.update(cv2.cvtColor(previous[0], cv2.COLOR_RGB2GRAY), 0.0)
    for index in range(1, args.frames + 1):
        left, right = frames(width, height, args.disparity, index)
        # Alternate which variant runs first, so neither always finds warm caches.
        order = ["without stereo", "with stereo"][:: 1 if index % 2 else -1]
        for variant in order:
            # Streams per variant: each reuses its own previous encodings, as a node would.
            temporal = [FramePair(previous[0], left, "rgb", stream=("left", variant)),
                        FramePair(previous[1], right, "rgb", stream=("right", variant))]
            started = time.perf_counter()
            if variant == "without stereo":
                # As the node computes by default (tracking.forward_backward off).
                engine.compute(temporal, backward=False)
                times[variant].append(time.perf_counter() - started)
                continue
            results = engine.compute(
                [*temporal, *stereo_frame_pairs(left, right, "rgb", backward=False)],
                backward=False,
            )
            engine_s = time.perf_counter() - started
            left_gray = cv2.cvtColor(left, cv2.COLOR_RGB2GRAY)
            right_gray = cv2.cvtColor(right, cv2.COLOR_RGB2GRAY)
            # The tracker runs with or without stereo: not part of either time.
            tracks = tracker.update(left_gray, index * 0.05, results[0].forward,
                                    results[0].backward)
            stereo = stereo_result(results[2:])
            started = time.perf_counter()
            matches = matcher.match(tracks, stereo.forward, stereo.backward, rig,
                                    (left_gray, right_gray))
            match_s = time.perf_counter() - started
            disparity = dense_disparity(stereo.forward, stereo.backward, rig, config)
            disparity_s = time.perf_counter() - started - match_s
            times[variant].append(engine_s + match_s)
            times["right matches"].append(match_s)
            times["disparity image (only while subscribed)"].append(disparity_s)
        found = matches.matched
        matched.append(int(found.sum()))
        tracked.append(len(tracks))
        truth = tracks.positions[found] - np.array([args.disparity, 0.0])
        right_errors.extend(np.hypot(*(matches.positions[found] - truth).T).tolist())
        interior = disparity[margin:-margin, margin:-margin]
        ok = np.isfinite(interior)
        valid.append(float(ok.mean()))
        disparity_errors.extend(np.abs(interior[ok] - args.disparity).ravel().tolist())
        previous = (left, right)

    def ms(values: list[float]) -> float:
        return 1e3 * statistics.median(values)

    errors = np.array(right_errors)
    dense = np.array(disparity_errors)
    summary = {
        "size": f"{width}x{height}", "frames": args.frames, "disparity_px": args.disparity,
        "engine": f"{engine.backend} on {engine.device}"
                  + (f" ({args.dis_preset})" if engine.backend == "dis" else "")
                  + f", {args.threads} thread(s)",
        "backbone_runs": engine.encoded_frames,
        "matched_per_frame_mean": statistics.mean(matched),
        "left_tracks_per_frame_mean": statistics.mean(tracked),
        # None when nothing matched (random NeuFlow weights give no usable flow).
        "right_error_px": (errors.size and {
            "median": float(np.median(errors)), "p95": float(np.percentile(errors, 95)),
            "max": float(errors.max())}) or None,
        "disparity_error_px": (dense.size and {
            "median": float(np.median(dense)), "p95": float(np.percentile(dense, 95)),
            "within_0.5": float(np.mean(dense <= 0.5))}) or None,
        "disparity_valid_fraction_interior": statistics.mean(valid),
        "time_ms_median": {name: ms(values) for name, values in times.items()},
    }
    summary["time_ratio_with_over_without"] = (
        summary["time_ms_median"]["with stereo"] / summary["time_ms_median"]["without stereo"]
    )
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
