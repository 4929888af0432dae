"""neuflow-bench: how fast flow is on THIS machine, for the engine alone and for the real node.

Two measurements, because they answer different questions:

- engine: one ``FlowEngine.compute`` per frame pair, per backend and size
  (what a backend costs; see engine_benchmark);
- end to end: a publisher process sends images at a fixed rate over DDS, the
  node computes flow, a subscriber process receives it (what a robot gets:
  latency percentiles, output rate and drops at each camera rate; see
  graph_run). This part needs ROS 2 (rclpy); the engine part does not.

NeuFlow without ``--checkpoint`` runs with random weights in the official
format: the timings are valid (speed does not depend on weight values), the
flow is not. The report says so. Writes bench.json and PNG plots into
``--out`` and prints markdown tables.

Exit codes: 0 done, 1 a measurement failed (the node did not start, say),
2 unusable options or checkpoint (one line on stderr each), 130 interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from neuflow_ros.flow.dis_backend import DIS_PRESETS
from neuflow_ros.flow.engine import BACKENDS, DEFAULT_DIS_PRESET, EngineConfig
from neuflow_ros.tools.bench_report import (
    SCHEMA,
    engine_table,
    graph_table,
    latency_summary,
    machine_info,
    write_report,
)
from neuflow_ros.tools.engine_benchmark import (
    NO_WEIGHTS,
    RANDOM_WEIGHTS,
    benchmark_engine,
    write_random_checkpoint,
)
from neuflow_ros.tools.size_argument import size_argument

PROGRAM = "neuflow-bench"
EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

FULL_DEFAULTS: dict[str, Any] = {
    "sizes": [(320, 240), (512, 384), (640, 480)],
    "rates": [10.0, 20.0, 30.0, 60.0],
    "frames": 150,
    "runs": 10,
    "warmup": 2,
}
QUICK_DEFAULTS: dict[str, Any] = {
    "sizes": [(160, 120)],
    "rates": [10.0, 30.0],
    "frames": 30,
    "runs": 3,
    "warmup": 1,
}
"""--quick: a sanity check in well under a minute, not numbers to publish.
Options given explicitly still win over either set."""

RANDOM_WEIGHTS_NOTE = (
    "NeuFlow backends without --checkpoint ran with random weights in the official "
    "checkpoint format: timings are valid, the flow itself is meaningless"
)


class ToolError(Exception):
    """Unusable options or checkpoint; main() prints the message as one line and exits 2."""


class RunFailedError(Exception):
    """A measurement could not be made (the node did not start, say); main() exits 1."""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Measure flow engine time per pair and end-to-end latency and throughput "
        "of the node over DDS on this machine; write JSON and PNG plots.",
    )
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS),
                        help="backends to time (default: all)")
    parser.add_argument("--sizes", nargs="+", type=size_argument, metavar="WxH",
                        help="image sizes (default: 320x240 512x384 640x480; quick: 160x120)")
    parser.add_argument("--graph-backends", nargs="+", choices=BACKENDS,
                        help="backends run end to end (default: --backends)")
    parser.add_argument("--graph-sizes", nargs="+", type=size_argument, metavar="WxH",
                        help="sizes run end to end (default: --sizes)")
    parser.add_argument("--rates", nargs="+", type=_positive_float, metavar="HZ",
                        help="input image rates end to end (default: 10 20 30 60; quick: 10 30)")
    parser.add_argument("--frames", type=_positive_int,
                        help="images sent per end-to-end run (default: 150; quick: 30)")
    parser.add_argument("--runs", type=_positive_int,
                        help="timed engine calls per size (default: 10; quick: 3)")
    parser.add_argument("--warmup", type=int, help="untimed engine calls first (default: 2)")
    parser.add_argument("--checkpoint", type=Path,
                        help="trained NeuFlow checkpoint, used for the backend of its version; "
                        "other NeuFlow backends use random weights")
    parser.add_argument("--device", default="auto", help="NeuFlow device: auto, cpu, cuda, cuda:N")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                        help="NeuFlow precision (fp16 needs CUDA)")
    parser.add_argument("--dis-preset", choices=tuple(DIS_PRESETS), default=DEFAULT_DIS_PRESET)
    parser.add_argument("--threads", type=_positive_int, default=2,
                        help="CPU threads for torch and OpenCV (default: %(default)s)")
    parser.add_argument("--no-engine", action="store_true", help="skip the engine timing")
    parser.add_argument("--no-graph", action="store_true",
                        help="skip the end-to-end runs (no ROS 2 needed)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, few frames and rates: a sanity check")
    parser.add_argument("--out", type=Path, default=Path("neuflow_bench"),
                        help="output folder (default: %(default)s)")
    return parser


def resolve_options(args: argparse.Namespace) -> argparse.Namespace:
    """Fill what was not given from the quick or full defaults; reject contradictions."""
    defaults = QUICK_DEFAULTS if args.quick else FULL_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.graph_backends = args.graph_backends or list(args.backends)
    args.graph_sizes = args.graph_sizes or list(args.sizes)
    if args.warmup < 0:
        raise ToolError(f"--warmup must be >= 0, got {args.warmup}")
    if args.no_engine and args.no_graph:
        raise ToolError("--no-engine and --no-graph together leave nothing to measure")
    try:
        EngineConfig(backend="neuflow_v2", device=args.device, precision=args.precision)
    except ValueError as error:
        raise ToolError(str(error)) from error
    return args


def resolve_weights(args: argparse.Namespace, folder: Path) -> dict[str, tuple[str | None, str]]:
    """{backend: (checkpoint path or None, weights label)} for every backend to be run.

    The trained checkpoint goes to the backend of its own version; every
    other NeuFlow backend gets random weights written into ``folder``.
    """
    wanted = dict.fromkeys(
        ([] if args.no_engine else args.backends) + ([] if args.no_graph else args.graph_backends)
    )
    trained_version = None
    if args.checkpoint is not None:
        from neuflow_ros.flow.checkpoint import CheckpointError, load_checkpoint

        try:
            trained_version, _ = load_checkpoint(args.checkpoint)
        except CheckpointError as error:
            raise ToolError(str(error)) from error
        if trained_version not in wanted:
            raise ToolError(
                f"--checkpoint {args.checkpoint} is {trained_version}, which is not among "
                f"the backends to run ({', '.join(wanted)})"
            )
    weights: dict[str, tuple[str | None, str]] = {}
    for backend in wanted:
        if backend == "dis":
            weights[backend] = (None, NO_WEIGHTS)
        elif backend == trained_version:
            weights[backend] = (str(args.checkpoint), str(args.checkpoint))
        else:
            weights[backend] = (str(write_random_checkpoint(backend, folder)), RANDOM_WEIGHTS)
    return weights


def run_engine_timings(
    args: argparse.Namespace, weights: dict[str, tuple[str | None, str]]
) -> list[dict[str, Any]]:
    entries = []
    for backend in args.backends:
        checkpoint, label = weights[backend]
        neuflow = backend != "dis"
        config = EngineConfig(
            backend=backend,
            checkpoint=checkpoint,
            device=args.device if neuflow else "cpu",
            precision=args.precision if neuflow else "fp32",
            dis_preset=args.dis_preset,
            num_threads=args.threads,
        )
        try:
            timings = benchmark_engine(config, args.sizes, args.runs, args.warmup, label)
        except ValueError as error:  # e.g. device 'cuda' on a machine without CUDA
            raise ToolError(str(error)) from error
        for timing in timings:
            _log(f"engine {backend} {timing.device} {timing.width}x{timing.height}: "
                 f"{timing.median_ms:.1f} ms/pair (median of {timing.runs})")
            entries.append({**vars(timing), "pairs_per_second": timing.pairs_per_second})
    return entries


def run_graph_measurements(
    args: argparse.Namespace, weights: dict[str, tuple[str | None, str]]
) -> list[dict[str, Any]]:
    try:
        from neuflow_ros.tools.graph_run import GraphRunConfig, GraphRunError, run_graph
    except ImportError as error:
        raise ToolError(
            f"the end-to-end runs need ROS 2 (rclpy) and neuflow_ros.tools.graph_run ({error}); "
            "source the environment or pass --no-graph"
        ) from error
    entries = []
    for backend in args.graph_backends:
        checkpoint, label = weights[backend]
        node_parameters: dict[str, Any] = {"dis_preset": args.dis_preset,
                                           "num_threads": args.threads}
        if backend != "dis":
            node_parameters["precision"] = args.precision
        for width, height in args.graph_sizes:
            for rate in args.rates:
                try:
                    config = GraphRunConfig(
                        width=width, height=height, rate_hz=rate, frames=args.frames,
                        backend=backend, checkpoint=Path(checkpoint) if checkpoint else None,
                        device=args.device if backend != "dis" else "cpu",
                        node_parameters=dict(node_parameters),
                    )
                except ValueError as error:
                    raise ToolError(str(error)) from error
                try:
                    result = run_graph(config)
                except GraphRunError as error:
                    raise RunFailedError(
                        f"end-to-end run {backend} {width}x{height} at {rate:g} Hz: {error}"
                    ) from error
                entry = graph_entry(result, width, height, rate, label)
                _log(f"graph {entry['backend']} {width}x{height} @ {rate:g} Hz: "
                     f"{entry['flows_received']}/{entry['frames_sent']} flows, "
                     f"p50 {_ms(entry['latency_ms']['p50'])}")
                entries.append(entry)
    return entries


def graph_entry(result: Any, width: int, height: int, rate_hz: float,
                weights: str) -> dict[str, Any]:
    """The JSON entry of one end-to-end run (a ``graph_run.GraphRunResult``).

    The backend and device are those the node reported using, which differ
    from the requested ones when it fell back (to DIS, or to the CPU). A
    value that could not be measured (NaN) becomes null: JSON has no NaN.
    """
    return {
        "backend": result.backend,
        "weights": weights,
        "device": result.device,
        "width": width,
        "height": height,
        "rate_hz": rate_hz,
        "frames_sent": result.frames_sent,
        "flows_received": result.flows_received,
        "frames_dropped": result.frames_dropped,
        "output_rate_hz": _finite_or_none(result.output_rate_hz),
        "latency_ms": latency_summary(result.latencies_ms),
        "node_overhead_ms": _finite_or_none(result.node_overhead_ms),
        "inference_ms": _finite_or_none(result.inference_ms),
        "flow_error_px": _finite_or_none(result.flow_error_px),
        "warnings": list(result.warnings),
        "latencies_ms": [round(value, 3) for value in result.latencies_ms],
    }


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure everything asked for and return the report (not yet written)."""
    machine = machine_info()  # before measuring: the load average is that of other work
    with tempfile.TemporaryDirectory(prefix="neuflow-bench-") as folder:
        weights = resolve_weights(args, Path(folder))
        engine = [] if args.no_engine else run_engine_timings(args, weights)
        graph = [] if args.no_graph else run_graph_measurements(args, weights)
    random_used = any(label == RANDOM_WEIGHTS for _, label in weights.values())
    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {
            "quick": args.quick,
            "runs": args.runs,
            "warmup": args.warmup,
            "frames": args.frames,
            "rates_hz": list(args.rates),
            "device": args.device,
            "precision": args.precision,
            "dis_preset": args.dis_preset,
            "threads": args.threads,
        },
        "notes": [RANDOM_WEIGHTS_NOTE] if random_used else [],
        "engine": engine,
        "graph": graph,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run(resolve_options(args))
    except ToolError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunFailedError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted, nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    written = write_report(report, args.out)
    for note in report["notes"]:
        print(f"Note: {note}.")
    if report["engine"]:
        print("\nEngine time per pair:\n")
        print(engine_table(report["engine"]))
    if report["graph"]:
        print("\nNode end to end over DDS:\n")
        print(graph_table(report["graph"]))
    print()
    for path in written.values():
        print(f"wrote {path}")
    return EXIT_OK
