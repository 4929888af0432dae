"""neuflow-export-onnx: write a NeuFlow checkpoint as ONNX for one resolution and verify it.

The file feeds TensorRT on a Jetson (see the README). Verification runs the
ONNX file in onnxruntime on the CPU next to PyTorch and prints their largest
and median flow difference; a model that differs by more than --tolerance
pixels is reported as failed, because an engine built from it would publish
wrong flow without any other sign.

Exit codes: 0 written (and verified), 1 written but verification failed,
2 unusable input or options (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from neuflow_ros.flow.checkpoint import CheckpointError
from neuflow_ros.flow.onnx_export import (
    DEFAULT_OPSET,
    ExportReport,
    VerificationReport,
    export_onnx,
    verify_onnx,
)
from neuflow_ros.tools.size_argument import parse_size

PROGRAM = "neuflow-export-onnx"
EXIT_OK = 0
EXIT_VERIFICATION_FAILED = 1
EXIT_BAD_INPUT = 2
DEFAULT_TOLERANCE_PX = 0.01
"""Both sides compute in float32; measured differences are ~1e-4 px, so 0.01 px only trips on a
real export fault while staying far below what a tracker would notice."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Export NeuFlow v1/v2 to ONNX at a fixed resolution (inputs img0, img1: "
        "float32 RGB 0..255 [B,3,H,W]; output flow: [B,2,H,W] in pixels) and check it "
        "against PyTorch with onnxruntime.",
    )
    parser.add_argument("checkpoint", help="NeuFlow checkpoint (.pth path or http(s) URL)")
    parser.add_argument("output", type=Path, help="ONNX file to write (.onnx)")
    parser.add_argument("--size", required=True, metavar="WxH",
                        help="input resolution, multiples of 16, e.g. 512x384")
    parser.add_argument("--batch", type=int, default=1, help="pairs per call (default: 1)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help="ONNX opset, 16..20 (default: %(default)s, parsed by TensorRT 8.6+)")
    parser.add_argument("--iters-s16", type=int,
                        help="NeuFlow v2 refinement steps at 1/16 scale (default: 1)")
    parser.add_argument("--iters-s8", type=int,
                        help="NeuFlow v2 refinement steps at 1/8 scale (default: 8)")
    parser.add_argument("--keep-batchnorm", action="store_true",
                        help="do not fold BatchNorm into the convolutions")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the onnxruntime vs PyTorch comparison")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_PX,
                        help="largest accepted flow difference in pixels (default: %(default)s)")
    return parser


def describe_export(report: ExportReport) -> str:
    network = "NeuFlow v1" if report.version == "neuflow_v1" else "NeuFlow v2"
    details = [f"{report.width}x{report.height}", f"batch {report.batch}", f"opset {report.opset}"]
    if report.iterations is not None:
        details.append(f"iterations {report.iterations[0]}+{report.iterations[1]}")
    details.append("BatchNorm folded" if report.batchnorm_folded else "BatchNorm kept")
    megabytes = report.file_bytes / 1e6
    return (
        f"wrote {report.path} ({network}, {', '.join(details)}, {megabytes:.1f} MB) "
        f"in {report.seconds:.1f} s"
    )


def describe_verification(report: VerificationReport) -> str:
    return (
        f"onnxruntime vs PyTorch: max |flow difference| {report.max_abs_diff:.2e} px, "
        f"median {report.median_abs_diff:.2e} px (largest flow {report.max_abs_flow:.1f} px; "
        f"onnxruntime {report.onnxruntime_seconds:.2f} s, "
        f"PyTorch {report.pytorch_seconds:.2f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        width, height = parse_size(args.size)
        if not args.tolerance > 0:
            raise ValueError(f"--tolerance must be positive, got {args.tolerance}")
        exported = export_onnx(
            args.checkpoint,
            args.output,
            width,
            height,
            batch=args.batch,
            opset=args.opset,
            fold_batchnorm=not args.keep_batchnorm,
            iters_s16=args.iters_s16,
            iters_s8=args.iters_s8,
        )
        print(describe_export(exported))
        if args.no_verify:
            return EXIT_OK
        verification = verify_onnx(exported.path, args.checkpoint)
    except (ValueError, CheckpointError, ImportError) as error:
        print(f"{PROGRAM}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(describe_verification(verification))
    if verification.max_abs_diff > args.tolerance:
        print(
            f"{PROGRAM}: error: verification failed: ONNX and PyTorch differ by up to "
            f"{verification.max_abs_diff:.3g} px (tolerance {args.tolerance:g} px)",
            file=sys.stderr,
        )
        return EXIT_VERIFICATION_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
