"""Time one ``FlowEngine.compute`` call per frame pair, exactly as the node makes it.

What is timed is the whole call: uint8 frames in, float32 flow in input
pixels out (upload, colour conversion, padding, network, download), because
that is what the node's worker thread pays per frame. Shared by
``neuflow-bench`` and ``benchmarks/bench_engine.py`` so both report the same
thing. ROS-free.

NeuFlow speed does not depend on the weight values, so without a trained
checkpoint the networks are timed with random weights written in the
official checkpoint format: no download is needed, but the flow they
produce is meaningless (speed only).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuflow_ros.flow.engine import EngineConfig, FlowEngine, FramePair
from neuflow_ros.imaging.synthetic_sequence import Motion, SyntheticSequence

RANDOM_WEIGHTS = "random"
"""``EngineTiming.weights`` of a NeuFlow engine timed without a trained checkpoint."""
NO_WEIGHTS = "none"
"""``EngineTiming.weights`` of DIS, which has no learned weights."""

SYNTHETIC_SHIFT_PX = (4.5, 1.0)
"""Motion between the two synthetic frames: a few pixels, like a camera at 30 Hz."""


@dataclass(frozen=True)
class EngineTiming:
    """Wall-clock time of ``FlowEngine.compute`` for one pair at one size, after warm-up."""

    backend: str
    weights: str
    device: str
    precision: str
    width: int
    height: int
    runs: int
    median_ms: float
    p95_ms: float
    min_ms: float

    @property
    def pairs_per_second(self) -> float:
        return 1000.0 / self.median_ms


def synthetic_frame_pair(width: int, height: int, seed: int = 0) -> FramePair:
    """Two RGB frames of a textured scene, the second shifted by SYNTHETIC_SHIFT_PX.

    Texture rather than a flat image so DIS does the work it does on a real
    camera (it skips nothing on textured input); no data files needed.
    """
    motion = Motion(*SYNTHETIC_SHIFT_PX, rotation_deg=0.0, zoom=1.0)
    sequence = SyntheticSequence(width, height, motion, seed=seed)
    return FramePair(sequence.frame(0), sequence.frame(1), "rgb")


def write_random_checkpoint(backend: str, folder: Path, seed: int = 0) -> Path:
    """Save a freshly initialised network as ``{'model': state_dict}``, the official layout.

    Going through a file (rather than handing the engine a model) times the
    same loading, batch-norm folding and placement as a real checkpoint.
    """
    import torch

    from neuflow_ros.flow.checkpoint import NETWORKS

    if backend not in NETWORKS:
        raise ValueError(f"random weights exist for {sorted(NETWORKS)} only, got {backend!r}")
    torch.manual_seed(seed)
    path = Path(folder) / f"{backend}_random_seed{seed}.pth"
    torch.save({"model": NETWORKS[backend]().state_dict()}, path)
    return path


def time_compute(engine: FlowEngine, pair: FramePair, runs: int, warmup: int) -> list[float]:
    """Milliseconds of each of ``runs`` calls, after ``warmup`` untimed calls.

    Warm-up calls absorb buffer allocation and cuDNN algorithm search, which
    the node also does once at start-up. On CUDA the engine returns host
    arrays, so each timed call already includes synchronisation.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    for _ in range(warmup):
        engine.compute([pair])
    durations = []
    for _ in range(runs):
        start = time.perf_counter()
        engine.compute([pair])
        durations.append((time.perf_counter() - start) * 1000.0)
    return durations


def benchmark_engine(
    config: EngineConfig,
    sizes: list[tuple[int, int]],
    runs: int,
    warmup: int,
    weights: str,
) -> list[EngineTiming]:
    """One EngineTiming per (width, height) in ``sizes`` for one engine configuration.

    ``weights`` is recorded as given ('random', 'none' or the checkpoint
    path) so a report can never pass random-weight numbers off as a trained
    model's.
    """
    engine = FlowEngine(config)
    timings = []
    for width, height in sizes:
        durations = sorted(time_compute(engine, synthetic_frame_pair(width, height), runs, warmup))
        timings.append(
            EngineTiming(
                backend=config.backend,
                weights=weights,
                device=engine.device,
                precision=engine.precision,
                width=width,
                height=height,
                runs=runs,
                median_ms=statistics.median(durations),
                p95_ms=float(np.percentile(durations, 95)),
                min_ms=durations[0],
            )
        )
    return timings
