"""neuflow-bench: engine timing, the report it writes, and a quick run through the real node."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from neuflow_ros.flow.checkpoint import load_checkpoint
from neuflow_ros.flow.engine import EngineConfig
from neuflow_ros.tools.bench_report import latency_summary, machine_info, write_report
from neuflow_ros.tools.bench_tool import EXIT_BAD_INPUT, EXIT_OK, main
from neuflow_ros.tools.engine_benchmark import (
    SYNTHETIC_SHIFT_PX,
    benchmark_engine,
    synthetic_frame_pair,
    time_compute,
    write_random_checkpoint,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class SleepingEngine:
    """Stands in for FlowEngine where only the call count and duration matter."""

    def __init__(self, sleep_s: float) -> None:
        self.sleep_s = sleep_s
        self.calls = 0

    def compute(self, pairs):
        self.calls += 1
        time.sleep(self.sleep_s)
        return []


def assert_valid_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100, path
    assert image.std() > 0, f"{path} is a blank image"


# --- engine timing -----------------------------------------------------------------


def test_time_compute_runs_warmup_untimed_and_measures_each_call():
    engine = SleepingEngine(0.004)
    pair = synthetic_frame_pair(32, 24)
    durations = time_compute(engine, pair, runs=3, warmup=2)
    assert engine.calls == 5
    assert len(durations) == 3
    assert all(4.0 <= ms < 200.0 for ms in durations)


def test_time_compute_rejects_zero_runs():
    with pytest.raises(ValueError, match="runs >= 1"):
        time_compute(SleepingEngine(0.0), synthetic_frame_pair(32, 24), runs=0, warmup=0)


def test_synthetic_pair_is_textured_and_moves_by_the_declared_shift():
    pair = synthetic_frame_pair(96, 64)
    assert pair.size == (96, 64)
    assert pair.previous.astype(np.float64).std() > 20.0
    # Sampling the second frame at each pixel moved by the declared shift gives back
    # the first (up to bilinear interpolation on a smooth texture); unmoved it does not.
    y, x = np.mgrid[0:64, 0:96].astype(np.float32)
    dx, dy = SYNTHETIC_SHIFT_PX
    moved_back = cv2.remap(pair.current, x + dx, y + dy, cv2.INTER_LINEAR)
    inner = (slice(8, -8), slice(8, -8))

    def median_difference(image):
        return np.median(np.abs(image[inner].astype(np.float64) - pair.previous[inner]))

    assert median_difference(moved_back) < 3.0
    assert median_difference(moved_back) < median_difference(pair.current) / 4


def test_random_checkpoint_has_the_official_layout_and_is_reproducible(tmp_path):
    first = write_random_checkpoint("neuflow_v1", tmp_path, seed=3)
    version, state = load_checkpoint(first)
    assert version == "neuflow_v1"
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    _, state_again = load_checkpoint(write_random_checkpoint("neuflow_v1", again_dir, seed=3))
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    _, state_other = load_checkpoint(write_random_checkpoint("neuflow_v1", other_dir, seed=4))
    floats = [key for key, value in state.items() if value.is_floating_point() and value.ndim >= 2]
    assert all(torch.equal(state[key], state_again[key]) for key in floats)
    assert not all(torch.equal(state[key], state_other[key]) for key in floats)


def test_random_checkpoint_refuses_dis(tmp_path):
    with pytest.raises(ValueError, match="random weights exist for"):
        write_random_checkpoint("dis", tmp_path)


def test_benchmark_engine_reports_one_ordered_timing_per_size():
    sizes = [(64, 48), (96, 64)]
    timings = benchmark_engine(EngineConfig(backend="dis", num_threads=1), sizes, 4, 1, "none")
    assert [(t.width, t.height) for t in timings] == sizes
    for timing in timings:
        assert (timing.backend, timing.device, timing.precision) == ("dis", "cpu", "fp32")
        assert timing.runs == 4 and timing.weights == "none"
        assert 0.0 < timing.min_ms <= timing.median_ms <= timing.p95_ms
        assert timing.pairs_per_second == pytest.approx(1000.0 / timing.median_ms)


# --- report --------------------------------------------------------------------------


def test_latency_summary_matches_linear_interpolation_percentiles():
    values = list(range(101, 0, -1))  # 1..101, unsorted
    summary = latency_summary(values)
    # Linear interpolation on sorted 1..101: the q-th percentile is 1 + q.
    assert summary == {"p50": 51.0, "p95": 96.0, "max": 101.0, "mean": 51.0}


def test_latency_summary_of_nothing_received_is_none_not_zero():
    assert latency_summary([]) == {"p50": None, "p95": None, "max": None, "mean": None}


def test_machine_info_describes_this_machine():
    info = machine_info()
    assert isinstance(info["cpu_model"], str) and info["cpu_model"]
    assert info["cpu_cores"] >= 1
    assert info["ram_gib"] > 0.1
    assert len(info["load_average"]) == 3 and min(info["load_average"]) >= 0.0
    assert info["opencv"] == cv2.__version__
    assert info["torch"] == torch.__version__
    assert (info["gpu"] is None) == (not torch.cuda.is_available())


def test_report_with_a_run_that_received_nothing_still_plots(tmp_path):
    graph = [
        {"backend": "dis", "device": "cpu", "width": 64, "height": 48, "rate_hz": rate,
         "output_rate_hz": out, "latencies_ms": latencies}
        for rate, out, latencies in ((10.0, 9.5, [3.0, 4.0, 5.0]), (30.0, None, []))
    ]
    written = write_report({"engine": [], "graph": graph}, tmp_path)
    assert set(written) == {"report", "latency_plot", "throughput_plot"}
    assert_valid_png(written["latency_plot"])
    assert_valid_png(written["throughput_plot"])
    saved = json.loads(written["report"].read_text())
    assert saved["files"] == {"latency_plot": "latency_histogram.png",
                              "throughput_plot": "throughput_vs_rate.png"}


# --- command line --------------------------------------------------------------------


def test_engine_only_run_with_random_neuflow_weights_says_so(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["--no-graph", "--backends", "neuflow_v1", "dis", "--sizes", "64x48",
                 "--runs", "1", "--warmup", "0", "--threads", "1", "--out", str(out)])
    assert code == EXIT_OK
    report = json.loads((out / "bench.json").read_text())
    assert report["graph"] == []
    weights = {entry["backend"]: entry["weights"] for entry in report["engine"]}
    assert weights == {"neuflow_v1": "random", "dis": "none"}
    assert any("random weights" in note for note in report["notes"])
    assert "random weights" in capsys.readouterr().out
    assert_valid_png(out / report["files"]["engine_plot"])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--no-engine", "--no-graph"], "nothing to measure"),
        (["--device", "cpu", "--precision", "fp16", "--no-graph"], "fp16"),
        (["--device", "gpu", "--no-graph"], "device must be"),
        (["--no-graph", "--warmup", "-1"], "--warmup"),
    ],
)
def test_contradictory_options_exit_2_with_one_line(tmp_path, capsys, arguments, message):
    assert main([*arguments, "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err.strip()
    assert error.startswith("neuflow-bench: error:") and message in error
    assert "\n" not in error
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda_exits_2(tmp_path, capsys):
    code = main(["--no-graph", "--backends", "neuflow_v1", "--device", "cuda", "--sizes", "64x48",
                 "--out", str(tmp_path / "out")])
    assert code == EXIT_BAD_INPUT
    assert "CUDA is not available" in capsys.readouterr().err


def test_checkpoint_of_a_backend_not_run_is_refused(tmp_path, capsys):
    checkpoint = write_random_checkpoint("neuflow_v1", tmp_path)
    code = main(["--no-graph", "--backends", "dis", "--checkpoint", str(checkpoint),
                 "--out", str(tmp_path / "out")])
    assert code == EXIT_BAD_INPUT
    assert "is neuflow_v1, which is not among" in capsys.readouterr().err


def test_unreadable_checkpoint_is_refused(tmp_path, capsys):
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    code = main(["--no-graph", "--backends", "neuflow_v2", "--checkpoint", str(broken),
                 "--out", str(tmp_path / "out")])
    assert code == EXIT_BAD_INPUT
    assert str(broken) in capsys.readouterr().err


def test_quick_run_through_the_node_gives_consistent_numbers(tmp_path):
    rates = (10.0, 20.0)
    frames = 12
    out = tmp_path / "bench"
    code = main(["--quick", "--backends", "dis", "--sizes", "64x48", "--rates", *map(str, rates),
                 "--frames", str(frames), "--runs", "2", "--threads", "1", "--out", str(out)])
    assert code == EXIT_OK
    report = json.loads((out / "bench.json").read_text())
    assert report["schema"] == "neuflow-bench/1"
    assert report["machine"]["cpu_cores"] >= 1
    assert [(e["backend"], e["width"], e["height"]) for e in report["engine"]] == [("dis", 64, 48)]
    assert [e["rate_hz"] for e in report["graph"]] == list(rates)
    for entry in report["graph"]:
        assert (entry["backend"], entry["width"], entry["height"]) == ("dis", 64, 48)
        assert entry["frames_sent"] == frames
        assert 0 < entry["flows_received"] <= entry["frames_sent"]
        assert entry["frames_dropped"] >= 0
        assert entry["flows_received"] + entry["frames_dropped"] <= entry["frames_sent"]
        assert len(entry["latencies_ms"]) == entry["flows_received"]
        latency = entry["latency_ms"]
        assert 0.0 < latency["p50"] <= latency["p95"] <= latency["max"]
        assert latency["max"] == pytest.approx(max(entry["latencies_ms"]), abs=1e-3)
        assert 0.0 < entry["output_rate_hz"] <= entry["rate_hz"] * 1.25 + 1.0
    for name in ("engine_plot", "latency_plot", "throughput_plot"):
        assert_valid_png(out / report["files"][name])
