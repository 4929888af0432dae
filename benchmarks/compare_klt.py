"""neuflow_ros feature tracks against a VINS-style KLT front end, side by side in one run.

Issue 15's question: do the tracks beat what a VIO front end would otherwise
run, on density and speed and not only on accuracy? Both trackers see the
same frames in the same process, one frame after the other, so the shared,
noisy machine slows both alike; the verdict is a ratio.

Per sequence, for the KLT front end (benchmarks/klt_baseline.py) and for
neuflow_ros (DIS flow + FeatureTracker): tracks per frame, mean track
lifetime (frames a track was seen, over all tracks started), and median
milliseconds per frame: the tracker alone (flow given), the flow, and the
whole front end. Then the ground-truth accuracy of one frame step on the
Middlebury pairs: median end-point error and the share over 3 px.

Sequences: the robot frames in ../shared/data/robot_sequence, centre-cropped
and scaled to 752x480 and 320x240, played forward and back (`--cycles`) for
longer tracks, and a synthetic textured 752x480 sequence with known motion.

    python benchmarks/compare_klt.py [--data ../shared/data] [--preset fast] [--no-backward]
        [--block-size 3] [--quality-level 0.01] [--no-refine] ...

Writes benchmarks/results/compare_klt.json and compare_klt.png and prints
markdown tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from eval_tracks_middlebury import ground_truth_errors, read_pair
from klt_baseline import KltConfig, KltFrontEnd
from matplotlib.figure import Figure

from neuflow_ros.flow.engine import EngineConfig, FlowEngine, FramePair
from neuflow_ros.imaging.synthetic_sequence import Motion, SyntheticSequence
from neuflow_ros.tracking.tracker import FeatureTracker, TrackerConfig

REPO = Path(__file__).resolve().parent.parent
FRAME_RATE = 15.0
ERROR_LIMIT_PX = 3.0


@dataclass
class Lifetimes:
    """Frames each track id was seen; a track alive at the end counts what it had."""

    seen: dict[int, int] = field(default_factory=dict)

    def record(self, ids: np.ndarray, ages: np.ndarray) -> None:
        self.seen.update(zip(ids.tolist(), ages.tolist(), strict=True))

    def mean(self) -> float:
        return statistics.fmean(self.seen.values()) if self.seen else 0.0


def crop_to_aspect(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre crop to width:height, then area-scale: a real camera's view, not a squashed one."""
    rows, cols = image.shape
    if cols * height > rows * width:
        keep = rows * width // height
        image = image[:, (cols - keep) // 2 : (cols - keep) // 2 + keep]
    else:
        keep = cols * height // width
        image = image[(rows - keep) // 2 : (rows - keep) // 2 + keep]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def robot_frames(folder: Path, width: int, height: int, cycles: int) -> list[np.ndarray]:
    paths = sorted(folder.glob("*.jpg"))
    if len(paths) < 2:
        raise SystemExit(f"no robot frames (*.jpg) under {folder}")
    frames = [crop_to_aspect(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), width, height)
              for p in paths]
    played = list(frames)
    for cycle in range(1, cycles):
        played += (frames[::-1] if cycle % 2 else frames)[1:]
    return played


def synthetic_frames(width: int, height: int, count: int) -> list[np.ndarray]:
    sequence = SyntheticSequence(width, height, Motion(), seed=7, channels=1)
    return [sequence.frame(i)[..., 0] for i in range(count)]


def run_sequence(
    frames: list[np.ndarray], engine: FlowEngine, backward: bool, tracker_config: TrackerConfig,
    klt_config: KltConfig,
) -> dict:
    """Both trackers over the frames, interleaved per frame; per-frame numbers from frame 1 on."""
    klt = KltFrontEnd(klt_config)
    tracker = FeatureTracker(tracker_config)
    klt_life, ours_life = Lifetimes(), Lifetimes()
    klt_ms, flow_ms, tracker_ms, klt_counts, ours_counts = [], [], [], [], []
    klt.update(frames[0])
    tracks = tracker.update(frames[0], 0.0)
    klt_life.record(klt.ids, klt.ages)
    ours_life.record(tracks.ids.astype(np.int64), tracks.ages)
    for index in range(1, len(frames)):
        started = time.perf_counter()
        klt.update(frames[index])
        klt_ms.append((time.perf_counter() - started) * 1e3)
        klt_counts.append(klt.ids.size)
        klt_life.record(klt.ids, klt.ages)

        started = time.perf_counter()
        flow = engine.compute(
            [FramePair(frames[index - 1], frames[index], "mono")], backward=backward
        )[0]
        flow_ms.append((time.perf_counter() - started) * 1e3)
        started = time.perf_counter()
        tracks = tracker.update(frames[index], index / FRAME_RATE, flow.forward, flow.backward)
        tracker_ms.append((time.perf_counter() - started) * 1e3)
        ours_counts.append(len(tracks))
        ours_life.record(tracks.ids.astype(np.int64), tracks.ages)
    klt_median = statistics.median(klt_ms)
    total = [f + t for f, t in zip(flow_ms, tracker_ms, strict=True)]
    return {
        "frames": len(frames),
        "size": [int(frames[0].shape[1]), int(frames[0].shape[0])],
        "klt": {
            "tracks_per_frame": statistics.fmean(klt_counts),
            "lifetime_frames": klt_life.mean(),
            "ms": klt_median,
        },
        "neuflow": {
            "tracks_per_frame": statistics.fmean(ours_counts),
            "lifetime_frames": ours_life.mean(),
            "tracker_ms": statistics.median(tracker_ms),
            "flow_ms": statistics.median(flow_ms),
            "total_ms": statistics.median(total),
            "tracker_ratio": statistics.median(tracker_ms) / klt_median,
            "total_ratio": statistics.median(total) / klt_median,
            "rejections": tracker.rejection_counts,
        },
    }


def middlebury_accuracy(
    root: Path, engine: FlowEngine, backward: bool, tracker_config: TrackerConfig,
    klt_config: KltConfig,
) -> dict:
    """One frame step on every Middlebury pair; errors pooled over all pairs."""
    folders = sorted(p for p in root.iterdir() if (p / "flow10.flo").exists())
    if not folders:
        raise SystemExit(f"no Middlebury pairs with flow10.flo under {root}")
    pooled: dict[str, list[np.ndarray]] = {"klt": [], "neuflow": []}
    for folder in folders:
        first, second, truth = read_pair(folder)
        klt = KltFrontEnd(klt_config)
        klt.update(first)
        klt.update(second)
        carried = klt.ages == 2
        pooled["klt"].append(
            ground_truth_errors(truth, klt.origins[carried], klt.points[carried])
        )

        tracker = FeatureTracker(tracker_config)
        tracker.update(first, 0.0)
        flow = engine.compute([FramePair(first, second, "mono")], backward=backward)[0]
        end = tracker.update(second, 0.1, flow.forward, flow.backward)
        carried = end.ages == 2
        pooled["neuflow"].append(
            ground_truth_errors(truth, end.previous_positions[carried], end.positions[carried])
        )
    summary = {}
    for name, parts in pooled.items():
        errors = np.concatenate(parts)
        summary[name] = {
            "pairs": len(folders),
            "tracks": int(errors.size),
            "median_error_px": float(np.median(errors)),
            "share_over_3px": float(np.mean(errors > ERROR_LIMIT_PX)),
        }
    return summary


def save_plot(sequences: dict[str, dict], path: Path) -> None:
    """Per sequence: ms per frame (KLT, tracker alone, flow + tracker) and tracks per frame."""
    figure = Figure(figsize=(8, 3.2), dpi=80)
    timing, density = figure.subplots(1, 2)
    names = list(sequences)
    x = np.arange(len(names))
    klt = [sequences[n]["klt"]["ms"] for n in names]
    tracker = [sequences[n]["neuflow"]["tracker_ms"] for n in names]
    flow = [sequences[n]["neuflow"]["flow_ms"] for n in names]
    timing.bar(x - 0.2, klt, 0.4, label="KLT front end", color="tab:gray")
    timing.bar(x + 0.2, tracker, 0.4, label="neuflow tracker", color="tab:blue")
    timing.bar(x + 0.2, flow, 0.4, bottom=tracker, label="+ DIS flow", color="tab:cyan")
    timing.set_ylabel("ms per frame (median)")
    density.bar(x - 0.2, [sequences[n]["klt"]["tracks_per_frame"] for n in names], 0.4,
                color="tab:gray", label="KLT front end")
    density.bar(x + 0.2, [sequences[n]["neuflow"]["tracks_per_frame"] for n in names], 0.4,
                color="tab:blue", label="neuflow")
    density.set_ylabel("tracks per frame (mean)")
    for axes in (timing, density):
        axes.set_xticks(x, [n.replace("_", "\n") for n in names], fontsize=8)
        axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)


def parse_args() -> argparse.Namespace:
    defaults = TrackerConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--plot", type=Path,
                        help="also save the plot here (e.g. benchmarks/figures/...png)")
    parser.add_argument("--cycles", type=int, default=3,
                        help="robot frames played forward and back this many times")
    parser.add_argument("--synthetic-frames", type=int, default=40)
    parser.add_argument("--preset", default="fast", help="DIS preset")
    parser.add_argument("--no-backward", action="store_true",
                        help="no backward flow (no forward-backward check)")
    parser.add_argument("--max-tracks", type=int, default=300)
    parser.add_argument("--min-distance", type=float, default=20.0)
    parser.add_argument("--block-size", type=int, default=defaults.block_size)
    parser.add_argument("--quality-level", type=float, default=defaults.quality_level)
    parser.add_argument("--no-refine", dest="refine", action="store_false",
                        default=defaults.refine)
    parser.add_argument("--refine", dest="refine", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    tracker_config = replace(
        TrackerConfig(), max_tracks=args.max_tracks, min_distance=args.min_distance,
        block_size=args.block_size, quality_level=args.quality_level, refine=args.refine,
    )
    klt_config = KltConfig(max_tracks=args.max_tracks, min_distance=round(args.min_distance))
    backward = not args.no_backward
    engine = FlowEngine(EngineConfig(backend="dis", dis_preset=args.preset, num_threads=1))
    robot = args.data / "robot_sequence"
    inputs = {
        "robot_752x480": robot_frames(robot, 752, 480, args.cycles),
        "robot_320x240": robot_frames(robot, 320, 240, args.cycles),
        "synthetic_752x480": synthetic_frames(752, 480, args.synthetic_frames),
    }
    sequences = {
        name: run_sequence(frames, engine, backward, tracker_config, klt_config)
        for name, frames in inputs.items()
    }
    accuracy = middlebury_accuracy(
        args.data / "middlebury", engine, backward, tracker_config, klt_config
    )

    flow_label = f"DIS {args.preset}" + ("" if backward else ", forward only")
    print(f"{flow_label}; tracker {tracker_config}; 1 thread\n")
    print("| sequence | frames | tracks/frame KLT / ours | lifetime KLT / ours | KLT ms | "
          "tracker ms (ratio) | flow ms | flow + tracker ms (ratio) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in sequences.items():
        klt, ours = row["klt"], row["neuflow"]
        print(
            f"| {name} | {row['frames']} | {klt['tracks_per_frame']:.0f} / "
            f"{ours['tracks_per_frame']:.0f} | {klt['lifetime_frames']:.1f} / "
            f"{ours['lifetime_frames']:.1f} | {klt['ms']:.1f} | {ours['tracker_ms']:.1f} "
            f"({ours['tracker_ratio']:.2f}x) | {ours['flow_ms']:.1f} | {ours['total_ms']:.1f} "
            f"({ours['total_ratio']:.2f}x) |"
        )
    print("\n| Middlebury (8 pairs) | tracks | median error px | share > 3 px |")
    print("|---|---|---|---|")
    for name, row in accuracy.items():
        print(f"| {name} | {row['tracks']} | {row['median_error_px']:.3f} | "
              f"{row['share_over_3px']:.1%} |")

    args.output.mkdir(parents=True, exist_ok=True)
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "flow": {"backend": "dis", "preset": args.preset, "backward": backward},
        "tracker": asdict(tracker_config),
        "klt": asdict(klt_config),
        "sequences": sequences,
        "middlebury": accuracy,
    }
    (args.output / "compare_klt.json").write_text(json.dumps(report, indent=2))
    save_plot(sequences, args.output / "compare_klt.png")
    if args.plot is not None:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        save_plot(sequences, args.plot)
    print(f"\nsaved {args.output / 'compare_klt.json'} and compare_klt.png")


if __name__ == "__main__":
    main()
