"""Time the flow engine per backend, resolution, batch size, device and precision.

What is timed is one ``FlowEngine.compute`` call end to end, exactly as the
node makes it: uint8 frames in, float32 flow in input pixels out (upload,
colour conversion, padding, network, download). The median of ``--runs``
calls after warm-up is reported, per call and per frame pair.

NeuFlow is timed with random weights written in the official checkpoint
format: speed does not depend on the weight values, and the official weights
are not needed. Frames come from ``<data>/robot_sequence`` when present
(resized to each size), otherwise from synthetic texture.

    PYTHONPATH=. python benchmarks/bench_engine.py --runs 5 --backends dis neuflow_v1

Writes ``engine_benchmark.json`` and ``engine_benchmark.png`` into ``--out``
and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure

from neuflow_ros.dis_backend import DIS_PRESETS
from neuflow_ros.engine import BACKENDS, DEFAULT_DIS_PRESET, EngineConfig, FlowEngine, FramePair
from neuflow_ros.models import NeuFlowV1, NeuFlowV2

REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_SIZES = ("320x240", "512x384", "768x432")
DIS_EXTRA_SIZES = ("640x480",)
NETWORKS = {"neuflow_v2": NeuFlowV2, "neuflow_v1": NeuFlowV1}


@dataclass
class Measurement:
    backend: str
    dis_preset: str | None
    device: str
    precision: str
    width: int
    height: int
    batch: int
    backward: bool
    median_ms_per_call: float
    median_ms_per_pair: float
    pairs_per_second: float


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def load_frames(data: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """Two consecutive RGB frames: real robot frames when available."""
    sequence = sorted((data / "robot_sequence").glob("*.jpg"))
    if len(sequence) >= 2:
        return tuple(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sequence[:2])
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.random((720, 1280, 3), dtype=np.float32), (0, 0), 3.0)
    frame0 = cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    shift = np.float32([[1, 0, 4.5], [0, 1, 1.0]])
    return frame0, cv2.warpAffine(frame0, shift, (1280, 720), borderMode=cv2.BORDER_REFLECT)


def write_random_checkpoint(version: str, folder: pathlib.Path) -> str:
    torch.manual_seed(0)
    path = folder / f"{version}_random.pth"
    torch.save({"model": NETWORKS[version]().state_dict()}, path)
    return str(path)


def engine_configs(args: argparse.Namespace, weights: pathlib.Path):
    """Every (backend, device, precision) combination the machine can run."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    for backend in args.backends:
        if backend == "dis":
            for preset in args.dis_presets:
                yield EngineConfig(backend="dis", dis_preset=preset, num_threads=args.threads)
            continue
        checkpoint = write_random_checkpoint(backend, weights)
        for device in devices:
            for precision in ("fp32", "fp16") if device == "cuda" else ("fp32",):
                yield EngineConfig(
                    backend=backend,
                    checkpoint=checkpoint,
                    device=device,
                    precision=precision,
                    num_threads=args.threads,
                )


def time_engine(engine: FlowEngine, pairs: list[FramePair], args: argparse.Namespace) -> float:
    for _ in range(args.warmup):
        engine.compute(pairs, backward=args.backward)
    durations = []
    for _ in range(args.runs):
        start = time.perf_counter()
        engine.compute(pairs, backward=args.backward)
        durations.append(time.perf_counter() - start)
    return statistics.median(durations) * 1000.0


def run(args: argparse.Namespace) -> list[Measurement]:
    frames = load_frames(args.data)
    measurements = []
    with tempfile.TemporaryDirectory() as weights:
        for config in engine_configs(args, pathlib.Path(weights)):
            engine = FlowEngine(config)
            sizes = list(args.sizes)
            if config.backend == "dis" and not args.no_dis_extra:
                sizes += [size for size in DIS_EXTRA_SIZES if size not in sizes]
            for width, height in map(parse_size, sizes):
                resized = [
                    cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames
                ]
                for batch in args.batches:
                    pairs = [FramePair(*resized, "rgb")] * batch
                    per_call = time_engine(engine, pairs, args)
                    measurement = Measurement(
                        backend=config.backend,
                        dis_preset=config.dis_preset if config.backend == "dis" else None,
                        device=engine.device,
                        precision=engine.precision,
                        width=width,
                        height=height,
                        batch=batch,
                        backward=args.backward,
                        median_ms_per_call=round(per_call, 3),
                        median_ms_per_pair=round(per_call / batch, 3),
                        pairs_per_second=round(1000.0 * batch / per_call, 2),
                    )
                    print(
                        f"{label(measurement):>14} {measurement.device:>4} "
                        f"{measurement.precision} {width}x{height} b{batch}: "
                        f"{measurement.median_ms_per_pair:.1f} ms/pair",
                        flush=True,
                    )
                    measurements.append(measurement)
    return measurements


def label(m: Measurement) -> str:
    return f"dis/{m.dis_preset}" if m.dis_preset else m.backend


def markdown_table(measurements: list[Measurement]) -> str:
    lines = [
        "| backend | device | precision | size | batch | ms/call | ms/pair | pairs/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in measurements:
        lines.append(
            f"| {label(m)} | {m.device} | {m.precision} | {m.width}x{m.height} | {m.batch} | "
            f"{m.median_ms_per_call:.1f} | {m.median_ms_per_pair:.1f} | {m.pairs_per_second:.1f} |"
        )
    return "\n".join(lines)


def plot(measurements: list[Measurement], path: pathlib.Path) -> None:
    figure = Figure(figsize=(8, 5))
    axes = figure.subplots()
    series: dict[str, list[Measurement]] = {}
    for m in measurements:
        series.setdefault(f"{label(m)} {m.device} {m.precision} b{m.batch}", []).append(m)
    for name, points in series.items():
        points.sort(key=lambda m: m.width * m.height)
        axes.plot(
            [m.width * m.height / 1e3 for m in points],
            [m.median_ms_per_pair for m in points],
            marker="o",
            label=name,
        )
    axes.set_xlabel("pixels per frame (thousands)")
    axes.set_ylabel("median ms per frame pair")
    axes.set_yscale("log")
    axes.axhline(1000 / 30, color="gray", linestyle="--", linewidth=1, label="30 Hz budget")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    axes.set_title("FlowEngine.compute, end to end")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="WIDTHxHEIGHT")
    parser.add_argument("--no-dis-extra", action="store_true", help="skip DIS at 640x480")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--backward", action="store_true", help="also compute backward flow")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch/OpenCV CPU threads")
    parser.add_argument(
        "--dis-presets", nargs="+", choices=tuple(DIS_PRESETS), default=[DEFAULT_DIS_PRESET]
    )
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--data", type=pathlib.Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "benchmarks" / "results")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    measurements = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": args.threads,
            "torch": torch.__version__,
            "opencv": cv2.__version__,
            "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "runs": args.runs,
        "measurements": [asdict(m) for m in measurements],
    }
    (args.out / "engine_benchmark.json").write_text(json.dumps(report, indent=2))
    plot(measurements, args.out / "engine_benchmark.png")
    print()
    print(markdown_table(measurements))


if __name__ == "__main__":
    main()
