"""Feature-track accuracy on Middlebury pairs with ground-truth flow.

Detects tracks on frame10, advances them to frame11 with the engine's DIS
flow (forward and backward) through the FeatureTracker, and compares each
surviving track's displacement with the ground-truth flow at its start. This
measures what a VO front end receives, rejections included, on real images.

Usage: python benchmarks/eval_tracks_middlebury.py [--data ../shared/data] [--preset fast]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from neuflow_ros.flow.engine import EngineConfig, FlowEngine, FramePair
from neuflow_ros.imaging.flow_io import read_flo
from neuflow_ros.tracking.image_patches import sample_bilinear
from neuflow_ros.tracking.tracker import REJECTION_REASONS, FeatureTracker, TrackerConfig

REPO = Path(__file__).resolve().parent.parent
UNKNOWN_FLOW = 1e9


def read_pair(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """frame10 and frame11 (gray uint8) and the ground-truth flow10.flo of one Middlebury pair."""
    frames = [
        cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
        for name in ("frame10.png", "frame11.png")
    ]
    if any(frame is None for frame in frames):
        raise FileNotFoundError(f"{folder} lacks a readable frame10.png / frame11.png")
    return frames[0], frames[1], read_flo(folder / "flow10.flo")


def ground_truth_errors(truth: np.ndarray, origins: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """End-point errors of tracks moved from `origins` to `ends`, where the truth is known there.

    A track whose bilinear footprint touches an unknown ground-truth pixel is
    left out rather than scored against a made-up value.
    """
    origins = np.asarray(origins, dtype=np.float64)
    known = np.all(np.abs(truth) < UNKNOWN_FLOW, axis=2).astype(np.float64)[..., None]
    usable = sample_bilinear(known, origins)[:, 0] == 1.0
    expected = sample_bilinear(np.where(known > 0, truth, 0.0), origins[usable])
    measured = np.asarray(ends, dtype=np.float64)[usable] - origins[usable]
    return np.linalg.norm(measured - expected, axis=1)


def evaluate_sequence(folder: Path, engine: FlowEngine, config: TrackerConfig) -> dict:
    first, second, truth = read_pair(folder)
    tracker = FeatureTracker(config)
    start = tracker.update(first, 0.0)
    flow = engine.compute([FramePair(first, second, "mono")], backward=True)[0]
    end = tracker.update(second, 0.1, flow.forward, flow.backward)

    carried = end.ages == 2
    errors = ground_truth_errors(truth, end.previous_positions[carried], end.positions[carried])
    detected = len(start)
    counts = tracker.rejection_counts
    return {
        "sequence": folder.name,
        "size": [int(first.shape[1]), int(first.shape[0])],
        "tracks": detected,
        "survived": int(np.count_nonzero(carried)),
        "evaluated": int(errors.size),
        "median_error_px": float(np.median(errors)) if errors.size else None,
        "p90_error_px": float(np.percentile(errors, 90)) if errors.size else None,
        "rejected_fraction": {reason: counts[reason] / detected for reason in REJECTION_REASONS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--preset", default="fast", help="DIS preset of the engine")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    root = args.data / "middlebury"
    folders = sorted(p for p in root.iterdir() if (p / "flow10.flo").exists())
    if not folders:
        raise SystemExit(f"no Middlebury sequences with flow10.flo under {root}")
    engine = FlowEngine(EngineConfig(backend="dis", dis_preset=args.preset, num_threads=1))
    config = TrackerConfig()
    rows = [evaluate_sequence(folder, engine, config) for folder in folders]

    print(f"DIS preset {args.preset!r}, TrackerConfig defaults, frame10 -> frame11\n")
    print(
        "| sequence | size | tracks | survived | median err px | p90 err px | "
        + " | ".join(f"rej {r}" for r in REJECTION_REASONS)
        + " |"
    )
    print("|---" * (6 + len(REJECTION_REASONS)) + "|")
    for row in rows:
        rejected = " | ".join(f"{row['rejected_fraction'][r]:.1%}" for r in REJECTION_REASONS)
        print(
            f"| {row['sequence']} | {row['size'][0]}x{row['size'][1]} | {row['tracks']} | "
            f"{row['survived']} | {row['median_error_px']:.3f} | {row['p90_error_px']:.3f} | "
            f"{rejected} |"
        )
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"tracks_middlebury_dis_{args.preset}.json"
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "preset": args.preset,
        "tracker": config.__dict__,
        "sequences": rows,
    }
    path.write_text(json.dumps(report, indent=2))
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
