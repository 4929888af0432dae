"""NeuFlow through the engine in each speed mode, next to the reference code's way of running.

The modes are what issue 7 asks to compare, each a camera stream (one stream
per batch item) fed frame after frame through ``FlowEngine.compute``:

- ``baseline``: how the reference demo runs the network: fp16 on CUDA (fp32 on
  the CPU), batch-norm folded, both images through the backbone every pair,
  no CUDA graphs;
- ``fp32``: fp32, both images encoded, no graphs;
- ``fp16``: fp16, both images encoded, no graphs (CUDA only);
- ``fp16_graphs``: as fp16, replayed from CUDA graphs (CUDA only);
- ``streaming``: fp16 + graphs on CUDA (fp32 on the CPU), each frame encoded once;
- ``pipelined``: as streaming, with the next step submitted before the previous
  step's flow is taken (``FlowEngine.submit``), as the node's worker does under
  backlog; its times are the intervals between finished steps.

Per mode: median and p95 milliseconds per call, pairs per second, start-up
(engine creation + warm-up, which includes graph capture), GPU memory, and
the flow difference to fp32 on real robot frames (median and p95 of the
per-pixel end-point difference). Speed does not depend on the weights, so
random weights in the official checkpoint format are used unless
``--checkpoint`` is given; with random weights the fp16 error is only an
upper-bound indication (random weights amplify rounding). The frames are the
robot sequence from shared/data (``--frames``), or moving synthetic texture
where it is missing; the JSON says which.

    PYTHONPATH=. python benchmarks/bench_modes.py --device cuda --out benchmarks/results

Writes ``modes_benchmark.json`` and ``modes_benchmark.png`` and prints a
markdown table.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure

from neuflow_ros.flow.engine import EngineConfig, FlowEngine, FramePair
from neuflow_ros.imaging.synthetic_sequence import Motion, SyntheticSequence
from neuflow_ros.tools.bench_report import machine_info
from neuflow_ros.tools.engine_benchmark import write_random_checkpoint
from neuflow_ros.tools.size_argument import size_argument

REPO = pathlib.Path(__file__).resolve().parent.parent
ROBOT_SEQUENCE = REPO.parent / "shared" / "data" / "robot_sequence"
CUDA_ONLY_MODES = ("fp16", "fp16_graphs")


@dataclass(frozen=True)
class ModeResult:
    backend: str
    mode: str
    width: int
    height: int
    batch: int
    precision: str
    median_ms: float
    p95_ms: float
    pairs_per_second: float
    startup_s: float
    gpu_memory_mb: float | None
    encoded_per_pair: float
    median_diff_to_fp32_px: float | None
    p95_diff_to_fp32_px: float | None


def mode_config(mode: str, backend: str, checkpoint: str, device: str) -> EngineConfig:
    cuda = device.startswith("cuda")
    half = "fp16" if cuda else "fp32"
    settings = {
        "baseline": {"precision": half, "streaming": False, "cuda_graphs": False},
        "fp32": {"precision": "fp32", "streaming": False, "cuda_graphs": False},
        "fp16": {"precision": "fp16", "streaming": False, "cuda_graphs": False},
        "fp16_graphs": {"precision": "fp16", "streaming": False, "cuda_graphs": True},
        "streaming": {"precision": half, "streaming": True, "cuda_graphs": True},
        "pipelined": {"precision": half, "streaming": True, "cuda_graphs": True},
    }[mode]
    return EngineConfig(backend=backend, checkpoint=checkpoint, device=device, **settings)


def load_frames(folder: pathlib.Path, width: int, height: int, count: int) -> list[np.ndarray]:
    """Real robot frames resized to the size, or moving synthetic texture without the data."""
    paths = sorted(folder.glob("*.jpg"))[:count]
    if paths:
        return [
            cv2.resize(
                cv2.imread(str(path))[:, :, ::-1], (width, height), interpolation=cv2.INTER_AREA
            )
            for path in paths
        ]
    sequence = SyntheticSequence(width, height, Motion(4.5, 0.5, 0.0, 1.0))
    return [sequence.frame(index) for index in range(count)]


def stream_pairs(frames: list[np.ndarray], step: int, batch: int) -> list[FramePair]:
    """The batch's pairs at one step: camera ``i`` sees the sequence shifted by ``i`` frames."""
    count = len(frames)
    return [
        FramePair(
            frames[(step + camera) % count],
            frames[(step + camera + 1) % count],
            "rgb",
            stream=camera,
        )
        for camera in range(batch)
    ]


@dataclass
class _ModeRun:
    durations_ms: list[float]
    startup_s: float
    flows: list[np.ndarray]
    encoded_per_pair: float
    engine: FlowEngine


def run_mode(
    config: EngineConfig, frames: list[np.ndarray], batch: int, runs: int, pipelined: bool
) -> _ModeRun:
    """Times ``runs`` steady-state steps after start-up; keeps camera 0's flows.

    Pipelined, step ``k + 1`` is submitted before step ``k``'s flow is taken,
    and a step's time is the interval since the previous step finished.
    """
    height, width = frames[0].shape[:2]
    started = time.perf_counter()
    engine = FlowEngine(config)
    engine.warm_up(height, width, "rgb", batch=batch)
    startup_s = time.perf_counter() - started
    encoded_before = engine.encoded_frames or 0
    durations = []
    flows = []
    if pipelined:
        pending = engine.submit(stream_pairs(frames, 0, batch))
        finished = time.perf_counter()
        for step in range(1, runs + 1):
            following = engine.submit(stream_pairs(frames, step, batch))
            flows.append(pending.result()[0].forward)
            previous_finish, finished = finished, time.perf_counter()
            durations.append((finished - previous_finish) * 1000.0)
            pending = following
        pending.result()
    else:
        for step in range(runs):
            begin = time.perf_counter()
            flows.append(engine.compute(stream_pairs(frames, step, batch))[0].forward)
            durations.append((time.perf_counter() - begin) * 1000.0)
    encoded = (engine.encoded_frames or 0) - encoded_before
    steps = runs + 1 if pipelined else runs
    return _ModeRun(durations, startup_s, flows, encoded / (steps * batch), engine)


def measure(
    args: argparse.Namespace, save: Callable[[list[ModeResult]], None]
) -> list[ModeResult]:
    """Every mode in turn; ``save`` gets the results so far after each one, so a
    mode that crashes the process (a CUDA error) loses only itself."""
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends:
            checkpoint = args.checkpoint or str(
                write_random_checkpoint(backend, pathlib.Path(folder))
            )
            for width, height in args.sizes:
                frames = load_frames(args.frames, width, height, count=10)
                for batch in args.batches:
                    reference = None
                    for mode in ["fp32", *(m for m in args.modes if m != "fp32")]:
                        if mode in CUDA_ONLY_MODES and not args.device.startswith("cuda"):
                            continue
                        config = mode_config(mode, backend, checkpoint, args.device)
                        run = run_mode(
                            config, frames, batch, args.runs, pipelined=mode == "pipelined"
                        )
                        if mode == "fp32":
                            reference = run.flows
                        differences = np.concatenate(
                            [
                                np.hypot(*(flow - ref).transpose(2, 0, 1)).ravel()
                                for flow, ref in zip(run.flows, reference, strict=True)
                            ]
                        )
                        memory = run.engine.gpu_memory_bytes()
                        median_ms = statistics.median(run.durations_ms)
                        result = ModeResult(
                            backend=backend,
                            mode=mode,
                            width=width,
                            height=height,
                            batch=batch,
                            precision=run.engine.precision,
                            median_ms=median_ms,
                            p95_ms=float(np.percentile(run.durations_ms, 95)),
                            pairs_per_second=batch * 1000.0 / median_ms,
                            startup_s=run.startup_s,
                            gpu_memory_mb=None if memory is None else memory / 2**20,
                            encoded_per_pair=run.encoded_per_pair,
                            median_diff_to_fp32_px=float(np.median(differences)),
                            p95_diff_to_fp32_px=float(np.percentile(differences, 95)),
                        )
                        print(format_row(result), flush=True)
                        results.append(result)
                        save(results)
                        del run
                        if args.device.startswith("cuda"):
                            torch.cuda.empty_cache()
    return results


TABLE_HEADER = (
    "| backend | size | batch | mode | precision | median ms | p95 ms | pairs/s | start-up s "
    "| GPU MB | encoded/pair | diff to fp32 median / p95 px |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def format_row(result: ModeResult) -> str:
    memory = "-" if result.gpu_memory_mb is None else f"{result.gpu_memory_mb:.0f}"
    return (
        f"| {result.backend} | {result.width}x{result.height} | {result.batch} | {result.mode} "
        f"| {result.precision} | {result.median_ms:.2f} | {result.p95_ms:.2f} "
        f"| {result.pairs_per_second:.1f} | {result.startup_s:.2f} | {memory} "
        f"| {result.encoded_per_pair:.2f} "
        f"| {result.median_diff_to_fp32_px:.4f} / {result.p95_diff_to_fp32_px:.4f} |"
    )


def plot(results: list[ModeResult], path: pathlib.Path) -> None:
    """Pairs per second per mode, one group of bars per backend/size/batch."""
    groups = sorted({(r.backend, r.width, r.height, r.batch) for r in results})
    modes = list(dict.fromkeys(r.mode for r in results))
    figure = Figure(figsize=(max(6.0, 1.6 * len(groups)), 4.0))
    axes = figure.subplots()
    width = 0.8 / len(modes)
    for offset, mode in enumerate(modes):
        values = [
            next(
                (
                    r.pairs_per_second
                    for r in results
                    if (r.backend, r.width, r.height, r.batch) == g and r.mode == mode
                ),
                0.0,
            )
            for g in groups
        ]
        axes.bar([i + offset * width for i in range(len(groups))], values, width, label=mode)
    axes.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))])
    axes.set_xticklabels([f"{b}\n{w}x{h} b{n}" for b, w, h, n in groups], fontsize=8)
    axes.set_ylabel("frame pairs per second")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["neuflow_v2", "neuflow_v1"])
    parser.add_argument(
        "--sizes", nargs="+", type=size_argument, default=[(512, 384), (768, 432)], metavar="WxH"
    )
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2])
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["baseline", "fp32", "fp16", "fp16_graphs", "streaming", "pipelined"],
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument(
        "--frames", type=pathlib.Path, default=ROBOT_SEQUENCE,
        help="folder of .jpg camera frames (default: the shared robot sequence)",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info()
    print(json.dumps(machine))
    print(TABLE_HEADER, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    frame_count = len(list(args.frames.glob("*.jpg")))

    def save(results: list[ModeResult]) -> None:
        report = {
            "machine": machine,
            "frames": f"{args.frames} ({frame_count} jpg)" if frame_count else "synthetic texture",
            "results": [asdict(result) for result in results],
        }
        (args.out / "modes_benchmark.json").write_text(json.dumps(report, indent=2))

    results = measure(args, save)
    plot(results, args.out / "modes_benchmark.png")
    print(f"wrote {args.out / 'modes_benchmark.json'} and {args.out / 'modes_benchmark.png'}")


if __name__ == "__main__":
    main()
