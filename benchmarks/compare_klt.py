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

    PYTHONPATH=. python benchmarks/compare_klt.py [--data ../shared/data] [--presets fast]
        [--no-forward-backward] [--block-size 3] [--quality-level 0.01] [--no-refine] ...

Writes benchmarks/results/compare_klt.json and compare_klt.png and prints
markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
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


class NeuflowRun:
    """DIS flow (one preset) + FeatureTracker over a sequence, timed per frame."""

    def __init__(self, engine: FlowEngine, backward: bool, config: TrackerConfig) -> None:
        self.engine = engine
        self.backward = backward
        self.tracker = FeatureTracker(config)
        self.lifetimes = Lifetimes()
        self.flow_ms: list[float] = []
        self.tracker_ms: list[float] = []
        self.counts: list[int] = []

    def start(self, frame: np.ndarray) -> None:
        tracks = self.tracker.update(frame, 0.0)
        self.lifetimes.record(tracks.ids.astype(np.int64), tracks.ages)

    def step(self, previous: np.ndarray, frame: np.ndarray, stamp: float) -> None:
        started = time.perf_counter()
        flow = self.engine.compute(
            [FramePair(previous, frame, "mono")], backward=self.backward
        )[0]
        self.flow_ms.append((time.perf_counter() - started) * 1e3)
        started = time.perf_counter()
        tracks = self.tracker.update(frame, stamp, flow.forward, flow.backward)
        self.tracker_ms.append((time.perf_counter() - started) * 1e3)
        self.counts.append(len(tracks))
        self.lifetimes.record(tracks.ids.astype(np.int64), tracks.ages)

    def summary(self, klt_ms: list[float]) -> dict:
        """Medians, and ratios to KLT as the median of per-frame ratios and as a ratio of sums.

        Both trackers ran on the same frame moments apart, so a per-frame
        ratio cancels the slow swings of a shared machine's load that make
        the medians of each alone drift between runs. The ratio of sums is
        the share of CPU time over the whole sequence, which a cost paid on
        some frames only would show and a median would hide.
        """
        tracker_ms = statistics.median(self.tracker_ms)
        total_ms = statistics.median(
            f + t for f, t in zip(self.flow_ms, self.tracker_ms, strict=True)
        )
        return {
            "tracks_per_frame": statistics.fmean(self.counts),
            "lifetime_frames": self.lifetimes.mean(),
            "tracker_ms": tracker_ms,
            "flow_ms": statistics.median(self.flow_ms),
            "total_ms": total_ms,
            "tracker_ratio": statistics.median(
                t / k for t, k in zip(self.tracker_ms, klt_ms, strict=True)
            ),
            "total_ratio": statistics.median(
                (f + t) / k for f, t, k in zip(self.flow_ms, self.tracker_ms, klt_ms, strict=True)
            ),
            "tracker_ratio_of_sums": sum(self.tracker_ms) / sum(klt_ms),
            "total_ratio_of_sums": (sum(self.flow_ms) + sum(self.tracker_ms)) / sum(klt_ms),
            "rejections": self.tracker.rejection_counts,
        }


def run_sequence(
    frames: list[np.ndarray], engines: dict[str, FlowEngine], backward: bool,
    tracker_config: TrackerConfig, klt_config: KltConfig,
) -> dict:
    """KLT and each DIS preset's front end, interleaved per frame; numbers from frame 1 on."""
    klt = KltFrontEnd(klt_config)
    klt_life = Lifetimes()
    klt_ms, klt_counts = [], []
    runs = {preset: NeuflowRun(engine, backward, tracker_config)
            for preset, engine in engines.items()}
    klt.update(frames[0])
    klt_life.record(klt.ids, klt.ages)
    for run in runs.values():
        run.start(frames[0])
    for index in range(1, len(frames)):
        started = time.perf_counter()
        klt.update(frames[index])
        klt_ms.append((time.perf_counter() - started) * 1e3)
        klt_counts.append(klt.ids.size)
        klt_life.record(klt.ids, klt.ages)
        for run in runs.values():
            run.step(frames[index - 1], frames[index], index / FRAME_RATE)
    klt_median = statistics.median(klt_ms)
    return {
        "frames": len(frames),
        "size": [int(frames[0].shape[1]), int(frames[0].shape[0])],
        "klt": {
            "tracks_per_frame": statistics.fmean(klt_counts),
            "lifetime_frames": klt_life.mean(),
            "ms": klt_median,
        },
        "neuflow": {preset: run.summary(klt_ms) for preset, run in runs.items()},
    }


def error_summary(errors: np.ndarray) -> dict:
    return {
        "tracks": int(errors.size),
        "median_error_px": float(np.median(errors)),
        "share_over_3px": float(np.mean(errors > ERROR_LIMIT_PX)),
    }


def middlebury_accuracy(
    root: Path, engines: dict[str, FlowEngine], backward: bool, tracker_config: TrackerConfig,
    klt_config: KltConfig,
) -> dict:
    """One frame step on every Middlebury pair; errors pooled over all pairs."""
    folders = sorted(p for p in root.iterdir() if (p / "flow10.flo").exists())
    if not folders:
        raise SystemExit(f"no Middlebury pairs with flow10.flo under {root}")
    pooled: dict[str, list[np.ndarray]] = {"klt": [], **{preset: [] for preset in engines}}
    for folder in folders:
        first, second, truth = read_pair(folder)
        klt = KltFrontEnd(klt_config)
        klt.update(first)
        klt.update(second)
        carried = klt.ages == 2
        pooled["klt"].append(
            ground_truth_errors(truth, klt.origins[carried], klt.points[carried])
        )
        for preset, engine in engines.items():
            tracker = FeatureTracker(tracker_config)
            tracker.update(first, 0.0)
            flow = engine.compute([FramePair(first, second, "mono")], backward=backward)[0]
            end = tracker.update(second, 0.1, flow.forward, flow.backward)
            carried = end.ages == 2
            pooled[preset].append(ground_truth_errors(
                truth, end.previous_positions[carried], end.positions[carried]
            ))
    return {"pairs": len(folders),
            **{name: error_summary(np.concatenate(parts)) for name, parts in pooled.items()}}


def save_plot(sequences: dict[str, dict], path: Path) -> None:
    """Per sequence: ms per frame (KLT; tracker + DIS flow per preset) and tracks per frame."""
    figure = Figure(figsize=(8, 3.2), dpi=80)
    timing, density = figure.subplots(1, 2)
    names = list(sequences)
    presets = list(sequences[names[0]]["neuflow"])
    width = 0.8 / (len(presets) + 1)
    x = np.arange(len(names))
    timing.bar(x, [sequences[n]["klt"]["ms"] for n in names], width, label="KLT front end",
               color="tab:gray")
    density.bar(x, [sequences[n]["klt"]["tracks_per_frame"] for n in names], width,
                label="KLT front end", color="tab:gray")
    for offset, preset in enumerate(presets, start=1):
        rows = [sequences[n]["neuflow"][preset] for n in names]
        tracker = [row["tracker_ms"] for row in rows]
        timing.bar(x + offset * width, tracker, width, label=f"tracker ({preset})",
                   color=f"C{2 * offset - 2}")
        timing.bar(x + offset * width, [row["flow_ms"] for row in rows], width, bottom=tracker,
                   label=f"+ DIS {preset} flow", color=f"C{2 * offset - 1}", alpha=0.6)
        density.bar(x + offset * width, [row["tracks_per_frame"] for row in rows], width,
                    label=f"neuflow ({preset})", color=f"C{2 * offset - 2}")
    timing.set_ylabel("ms per frame (median)")
    density.set_ylabel("tracks per frame (mean)")
    for axes in (timing, density):
        axes.set_xticks(x + width * len(presets) / 2, [n.replace("_", "\n") for n in names],
                        fontsize=8)
        axes.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path)


def parse_args() -> argparse.Namespace:
    defaults = TrackerConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--plot", type=Path,
                        help="also save the plot here (e.g. benchmarks/figures/...png)")
    parser.add_argument("--cycles", type=int, default=7,
                        help="robot frames played forward and back this many times")
    parser.add_argument("--synthetic-frames", type=int, default=60)
    parser.add_argument("--presets", nargs="+", default=["fast", "ultrafast"],
                        help="DIS presets, each a front end of its own")
    parser.add_argument("--forward-backward", dest="forward_backward", action="store_true",
                        default=defaults.forward_backward,
                        help="compute the backward flow for the forward-backward check")
    parser.add_argument("--no-forward-backward", dest="forward_backward",
                        action="store_false")
    parser.add_argument("--residual-ratio", type=float, default=defaults.residual_ratio)
    parser.add_argument("--max-tracks", type=int, default=300)
    parser.add_argument("--min-distance", type=float, default=20.0)
    parser.add_argument("--block-size", type=int, default=defaults.block_size)
    parser.add_argument("--quality-level", type=float, default=defaults.quality_level)
    parser.add_argument("--detection-tile", type=int, default=defaults.detection_tile)
    parser.add_argument("--detection-interval", type=int, default=defaults.detection_interval)
    parser.add_argument("--no-refine", dest="refine", action="store_false",
                        default=defaults.refine)
    parser.add_argument("--refine", dest="refine", action="store_true")
    return parser.parse_args()


def print_tables(sequences: dict[str, dict], accuracy: dict) -> None:
    print("| sequence | DIS preset | tracks/frame KLT / ours | lifetime KLT / ours | KLT ms | "
          "tracker ms (ratio: median / of sums) | flow ms | flow + tracker ms (ratio: median / "
          "of sums) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in sequences.items():
        klt = row["klt"]
        for preset, ours in row["neuflow"].items():
            print(
                f"| {name} | {preset} | {klt['tracks_per_frame']:.0f} / "
                f"{ours['tracks_per_frame']:.0f} | {klt['lifetime_frames']:.1f} / "
                f"{ours['lifetime_frames']:.1f} | {klt['ms']:.1f} | {ours['tracker_ms']:.1f} "
                f"({ours['tracker_ratio']:.2f}x / {ours['tracker_ratio_of_sums']:.2f}x) | "
                f"{ours['flow_ms']:.1f} | {ours['total_ms']:.1f} ({ours['total_ratio']:.2f}x / "
                f"{ours['total_ratio_of_sums']:.2f}x) |"
            )
    print(f"\n| Middlebury ({accuracy['pairs']} pairs) | tracks | median error px | share > 3 px |")
    print("|---|---|---|---|")
    for name, row in accuracy.items():
        if name == "pairs":
            continue
        label = "KLT" if name == "klt" else f"neuflow, DIS {name}"
        print(f"| {label} | {row['tracks']} | {row['median_error_px']:.3f} | "
              f"{row['share_over_3px']:.1%} |")


def main() -> None:
    args = parse_args()
    load_at_start = os.getloadavg()[0]
    tracker_config = replace(
        TrackerConfig(), max_tracks=args.max_tracks, min_distance=args.min_distance,
        block_size=args.block_size, quality_level=args.quality_level, refine=args.refine,
        detection_tile=args.detection_tile, detection_interval=args.detection_interval,
        forward_backward=args.forward_backward, residual_ratio=args.residual_ratio,
    )
    klt_config = KltConfig(max_tracks=args.max_tracks, min_distance=round(args.min_distance))
    backward = tracker_config.forward_backward
    engines = {
        preset: FlowEngine(EngineConfig(backend="dis", dis_preset=preset, num_threads=1))
        for preset in args.presets
    }
    robot = args.data / "robot_sequence"
    inputs = {
        "robot_752x480": robot_frames(robot, 752, 480, args.cycles),
        "robot_320x240": robot_frames(robot, 320, 240, args.cycles),
        "synthetic_752x480": synthetic_frames(752, 480, args.synthetic_frames),
    }
    sequences = {
        name: run_sequence(frames, engines, backward, tracker_config, klt_config)
        for name, frames in inputs.items()
    }
    accuracy = middlebury_accuracy(
        args.data / "middlebury", engines, backward, tracker_config, klt_config
    )
    print(f"DIS{'' if backward else ' forward only'}; tracker {tracker_config}; 1 thread; "
          f"load average at start {load_at_start:.1f} on {os.cpu_count()} CPUs\n")
    print_tables(sequences, accuracy)

    args.output.mkdir(parents=True, exist_ok=True)
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "flow": {"backend": "dis", "presets": args.presets, "backward": backward},
        "load_average_at_start": load_at_start,
        "cpus": os.cpu_count(),
        "malloc_environment": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
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
