"""GPU memory of one NeuFlow network pass, counted without a GPU and measured with one.

A user sizing a Jetson needs to know what a camera costs before buying one.
This script runs the engine's worst pass (``neuflow_ros.tools.network_pass``:
every camera's stream starting, so both images of each pair go through the
backbone) and counts the bytes of every tensor it creates
(``neuflow_ros.tools.tensor_memory``). On the ``meta``
device (the default) the count needs no GPU and no time; with ``--device
cuda`` the same pass also runs for real and PyTorch's peak allocation is
printed next to the count, which is how the count is checked.

Continuing streams encode half the images; the pairwise part, which
dominates, is the same. Weights are listed apart; CUDA graphs add their
inputs and outputs (see the README's GPU memory section). MB are 2**20 bytes,
as in the node's diagnostics.

    PYTHONPATH=. python benchmarks/pass_memory.py --out benchmarks/results

Writes ``pass_memory.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import torch

from neuflow_ros.flow.engine import EngineConfig
from neuflow_ros.flow.neuflow_backend import forward_options
from neuflow_ros.models import FlowNetwork, NeuFlowV1, NeuFlowV2, fold_batchnorm
from neuflow_ros.tools.bench_report import machine_info
from neuflow_ros.tools.network_pass import run_network_pass
from neuflow_ros.tools.size_argument import size_argument
from neuflow_ros.tools.tensor_memory import LiveTensorBytes

NETWORKS = {"neuflow_v2": NeuFlowV2, "neuflow_v1": NeuFlowV1}
PRECISIONS = {"fp16": torch.float16, "fp32": torch.float32}
LOADS = ((1, False), (1, True), (2, True))
"""(cameras, backward flow): one camera; one with the tracker's backward check; a stereo pair."""
MB = 2**20


def main() -> None:
    args = _parse_args()
    device = torch.device(args.device)
    rows = []
    for network in args.networks:
        for precision in args.precisions:
            dtype = PRECISIONS[precision]
            model = fold_batchnorm(NETWORKS[network]().eval()).to(device=device, dtype=dtype)
            weights = sum(t.nbytes for t in (*model.parameters(), *model.buffers()))
            options = forward_options(network, EngineConfig.iters_s16, EngineConfig.iters_s8)
            for width, height in args.sizes:
                for cameras, backward in LOADS:
                    counted, allocated = _measure(model, options, width, height, cameras, backward)
                    rows.append(
                        {
                            "network": network,
                            "precision": precision,
                            "size": f"{width}x{height}",
                            "cameras": cameras,
                            "backward": backward,
                            "weights_mb": round(weights / MB, 1),
                            "pass_counted_mb": round(counted / MB, 1),
                            "pass_allocated_mb": None
                            if allocated is None
                            else round(allocated / MB, 1),
                        }
                    )
                    print(_markdown_row(rows[-1]), flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        report = {"device": args.device, "machine": machine_info(), "rows": rows}
        (args.out / "pass_memory.json").write_text(json.dumps(report, indent=2) + "\n")


def _measure(
    model: FlowNetwork,
    options: dict[str, int],
    width: int,
    height: int,
    cameras: int,
    backward: bool,
) -> tuple[int, int | None]:
    """(bytes counted, bytes PyTorch's CUDA allocator peaked at or None) for one pass."""
    on_cuda = next(model.parameters()).is_cuda
    if on_cuda:
        # A first pass lets cuDNN pick its kernels and PyTorch cache what it builds once.
        run_network_pass(model, options, width, height, cameras, backward)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    counter = LiveTensorBytes()
    with counter:
        run_network_pass(model, options, width, height, cameras, backward)
    if not on_cuda:
        return counter.peak_bytes, None
    torch.cuda.synchronize()
    return counter.peak_bytes, torch.cuda.max_memory_allocated() - before


def _markdown_row(row: dict) -> str:
    load = f"{row['cameras']} camera{'s' if row['cameras'] > 1 else ''}" + (
        " + backward" if row["backward"] else ""
    )
    allocated = "" if row["pass_allocated_mb"] is None else f" | {row['pass_allocated_mb']}"
    return (
        f"| {row['network']} | {row['precision']} | {row['size']} | {load} | "
        f"{row['weights_mb']} | {row['pass_counted_mb']}{allocated} |"
    )


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    parser.add_argument(
        "--precisions", nargs="+", choices=list(PRECISIONS), default=["fp16", "fp32"]
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=size_argument,
        default=[(512, 384), (640, 480), (768, 432), (1280, 720)],
        help="input sizes WxH (padded to the network grid as the engine does)",
    )
    parser.add_argument(
        "--device",
        default="meta",
        help="'meta' counts without a GPU; 'cuda' also measures the allocator's peak",
    )
    parser.add_argument("--out", type=pathlib.Path, help="folder for pass_memory.json")
    return parser.parse_args()


if __name__ == "__main__":
    main()
