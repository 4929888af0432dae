"""What ``neuflow-bench`` leaves behind: a JSON report, PNG plots and markdown tables.

Benchmark numbers mean nothing without the machine they came from, so the
report always carries it. Plots are drawn from the report's own entries (not
from live objects), so a JSON file can be re-plotted or compared later, and
with matplotlib's object API only: no display and no global pyplot state,
which lets the tool run headless on a robot or in CI. ROS-free.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.figure import Figure

REPORT_FILE = "bench.json"
LATENCY_PLOT_FILE = "latency_histogram.png"
THROUGHPUT_PLOT_FILE = "throughput_vs_rate.png"
ENGINE_PLOT_FILE = "engine_time.png"
SCHEMA = "neuflow-bench/1"
FRAME_BUDGET_HZ = 30.0
"""Drawn on the engine plot: the budget of the most common camera rate."""


def machine_info() -> dict[str, Any]:
    """CPU, memory, library versions and GPU of the machine running the benchmark.

    The load average is there because other work on the machine (a shared CI
    runner, a robot's other nodes) slows every number down.
    """
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "torch": None,
        "gpu": None,
    }
    if importlib.util.find_spec("torch") is None:
        return info
    import torch

    # torch's own version string keeps the build tag (+cpu, +cu124) the package metadata drops.
    info["torch"] = torch.__version__
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_model() -> str:
    """The 'model name' of /proc/cpuinfo (Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/max/mean in ms; all None when nothing arrived (never a made-up zero)."""
    if len(latencies_ms) == 0:
        return {"p50": None, "p95": None, "max": None, "mean": None}
    values = np.asarray(latencies_ms, dtype=np.float64)
    return {
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "max": float(values.max()),
        "mean": float(values.mean()),
    }


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write the JSON report and the plots its entries allow; returns {name: path}.

    A plot with nothing to show (no end-to-end runs, say) is not written,
    rather than written empty.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    engine = report.get("engine", [])
    graph = report.get("graph", [])
    if engine:
        written["engine_plot"] = out_dir / ENGINE_PLOT_FILE
        plot_engine_times(engine, written["engine_plot"])
    if graph:
        written["latency_plot"] = out_dir / LATENCY_PLOT_FILE
        plot_latency_histograms(graph, written["latency_plot"])
        written["throughput_plot"] = out_dir / THROUGHPUT_PLOT_FILE
        plot_throughput(graph, written["throughput_plot"])
    report = {**report, "files": {name: path.name for name, path in written.items()}}
    written["report"] = out_dir / REPORT_FILE
    written["report"].write_text(json.dumps(report, indent=2) + "\n")
    return written


def _series_label(entry: dict[str, Any]) -> str:
    return f"{entry['backend']} {entry['device']} {entry['width']}x{entry['height']}"


def _group(entries: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        groups.setdefault(_series_label(entry), []).append(entry)
    return groups


def plot_engine_times(entries: Sequence[dict[str, Any]], path: Path) -> None:
    """Median engine time per pair against image size, one line per backend and device."""
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    series: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        series.setdefault(f"{entry['backend']} {entry['device']} {entry['precision']}", []).append(
            entry
        )
    for name, points in series.items():
        points = sorted(points, key=lambda e: e["width"] * e["height"])
        axes.plot(
            [e["width"] * e["height"] / 1000.0 for e in points],
            [e["median_ms"] for e in points],
            marker="o",
            label=name,
        )
    axes.axhline(1000.0 / FRAME_BUDGET_HZ, color="gray", linestyle="--", linewidth=1,
                 label=f"{FRAME_BUDGET_HZ:g} Hz budget")
    axes.set_yscale("log")
    axes.set_xlabel("pixels per frame (thousands)")
    axes.set_ylabel("median ms per frame pair")
    axes.set_title("FlowEngine.compute per pair")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def plot_latency_histograms(entries: Sequence[dict[str, Any]], path: Path) -> None:
    """Capture-to-receipt latency distribution, one panel per backend and size, one
    curve per input rate: queueing shows up as a tail growing with the rate."""
    groups = _group(entries)
    figure = Figure(figsize=(7, 3.2 * len(groups)))
    panels = figure.subplots(len(groups), 1, squeeze=False)[:, 0]
    for axes, (name, runs) in zip(panels, groups.items(), strict=True):
        for run in sorted(runs, key=lambda e: e["rate_hz"]):
            latencies = run["latencies_ms"]
            if latencies:
                axes.hist(latencies, bins=30, histtype="step", linewidth=1.5,
                          label=f"{run['rate_hz']:g} Hz in (n={len(latencies)})")
        axes.set_title(f"end-to-end latency, {name}")
        axes.set_xlabel("latency (ms)")
        axes.set_ylabel("flow messages")
        axes.grid(True, alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def plot_throughput(entries: Sequence[dict[str, Any]], path: Path) -> None:
    """Flow output rate against camera rate; the diagonal is 'every frame processed'."""
    figure = Figure(figsize=(6, 4.5))
    axes = figure.subplots()
    highest = max(entry["rate_hz"] for entry in entries)
    axes.plot([0, highest], [0, highest], color="gray", linestyle="--", linewidth=1,
              label="output = input")
    for name, runs in _group(entries).items():
        runs = sorted(runs, key=lambda e: e["rate_hz"])
        outputs = [math.nan if e["output_rate_hz"] is None else e["output_rate_hz"] for e in runs]
        axes.plot([e["rate_hz"] for e in runs], outputs, marker="o", label=name)
    axes.set_xlabel("input image rate (Hz)")
    axes.set_ylabel("flow output rate (Hz)")
    axes.set_title("node throughput over DDS")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def engine_table(entries: Sequence[dict[str, Any]]) -> str:
    """Markdown table of engine timings, as pasted into the README."""
    lines = [
        "| backend | weights | device | precision | size | median ms/pair | p95 ms | pairs/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        lines.append(
            f"| {e['backend']} | {e['weights']} | {e['device']} | {e['precision']} | "
            f"{e['width']}x{e['height']} | {_cell(e['median_ms'])} | {_cell(e['p95_ms'])} | "
            f"{_cell(1000.0 / e['median_ms'])} |"
        )
    return "\n".join(lines)


def graph_table(entries: Sequence[dict[str, Any]]) -> str:
    """Markdown table of end-to-end runs, as pasted into the README."""
    lines = [
        "| backend | size | input Hz | sent | received | dropped | output Hz | "
        "p50 ms | p95 ms | max ms | engine ms | node overhead ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        latency = e["latency_ms"]
        lines.append(
            f"| {e['backend']} ({e['device']}) | {e['width']}x{e['height']} | {e['rate_hz']:g} | "
            f"{e['frames_sent']} | {e['flows_received']} | {e['frames_dropped']} | "
            f"{_cell(e['output_rate_hz'])} | {_cell(latency['p50'])} | "
            f"{_cell(latency['p95'])} | {_cell(latency['max'])} | "
            f"{_cell(e['inference_ms'])} | {_cell(e['node_overhead_ms'])} |"
        )
    return "\n".join(lines)
