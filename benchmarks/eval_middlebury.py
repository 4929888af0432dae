"""Average end-point error of the flow engine on the Middlebury "other" training set.

Runs each requested backend through ``FlowEngine`` (the code the node runs)
on every sequence, at the native size and at a reduced inference size (each
side scaled by ``--reduced-scale`` and rounded to a multiple of 16), with the
flow always returned at the input grid so it can be compared with the ground
truth pixel by pixel. Unknown ground truth (> 1e9) is masked.

    PYTHONPATH=. python benchmarks/eval_middlebury.py --dis-presets ultrafast fast medium
    PYTHONPATH=. python benchmarks/eval_middlebury.py --backend neuflow_v2 --checkpoint w.pth

Prints a markdown table and writes ``middlebury_epe.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import cv2
import numpy as np

from neuflow_ros.flow.dis_backend import DIS_PRESETS
from neuflow_ros.flow.engine import BACKENDS, EngineConfig, FlowEngine, FramePair

REPO = pathlib.Path(__file__).resolve().parent.parent
FLO_MAGIC = 202021.25
UNKNOWN_FLOW = 1e9


def read_flo(path: pathlib.Path) -> np.ndarray:
    """Middlebury .flo: float32 magic, int32 width, int32 height, then HxWx2 float32."""
    raw = path.read_bytes()
    magic = np.frombuffer(raw, dtype="<f4", count=1)[0]
    if magic != np.float32(FLO_MAGIC):
        raise ValueError(f"{path}: not a .flo file (magic {magic})")
    width, height = (int(v) for v in np.frombuffer(raw, dtype="<i4", count=2, offset=4))
    data = np.frombuffer(raw, dtype="<f4", count=width * height * 2, offset=12)
    return data.reshape(height, width, 2)


def read_frame(path: pathlib.Path) -> tuple[np.ndarray, str]:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FileNotFoundError(path)
    if image.ndim == 2:
        return image, "mono"
    return image[:, :, :3], "bgr"


def reduced_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return (max(32, round(width * scale / 16) * 16), max(32, round(height * scale / 16) * 16))


def average_epe(flow: np.ndarray, truth: np.ndarray) -> float:
    valid = np.all(np.abs(truth) < UNKNOWN_FLOW, axis=2)
    error = np.linalg.norm(flow - truth, axis=2)
    return float(error[valid].mean())


def evaluate(args: argparse.Namespace) -> list[dict]:
    sequences = sorted(p for p in (args.data / "middlebury").iterdir() if p.is_dir())
    if not sequences:
        raise SystemExit(f"no Middlebury sequences under {args.data / 'middlebury'}")
    variants = (
        [{"backend": "dis", "dis_preset": preset} for preset in args.dis_presets]
        if args.backend == "dis"
        else [{"backend": args.backend, "checkpoint": args.checkpoint, "device": args.device}]
    )
    for variant in variants:
        variant["num_threads"] = args.threads
    rows = []
    for variant in variants:
        for sequence in sequences:
            frame0, color_order = read_frame(sequence / "frame10.png")
            frame1, _ = read_frame(sequence / "frame11.png")
            truth = read_flo(sequence / "flow10.flo")
            height, width = frame0.shape[:2]
            reduced = reduced_size(width, height, args.reduced_scale)
            for mode, size in (("native", None), ("reduced", reduced)):
                engine = FlowEngine(EngineConfig(**variant, inference_size=size))
                (result,) = engine.compute([FramePair(frame0, frame1, color_order)])
                rows.append(
                    {
                        "method": variant.get("dis_preset", variant["backend"]),
                        "sequence": sequence.name,
                        "mode": mode,
                        "input_size": [width, height],
                        "inference_size": list(size or (width, height)),
                        "epe": round(average_epe(result.forward, truth), 4),
                    }
                )
                print(
                    f"{rows[-1]['method']:>10} {sequence.name:>12} {mode:>8}: {rows[-1]['epe']:.3f}"
                )
    return rows


def markdown_table(rows: list[dict]) -> str:
    columns = list(dict.fromkeys((row["method"], row["mode"]) for row in rows))
    sequences = list(dict.fromkeys(row["sequence"] for row in rows))
    epe = {(row["method"], row["mode"], row["sequence"]): row["epe"] for row in rows}
    header = "| sequence | " + " | ".join(f"{m} {mode}" for m, mode in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for sequence in sequences:
        cells = [f"{epe[(m, mode, sequence)]:.3f}" for m, mode in columns]
        lines.append(f"| {sequence} | " + " | ".join(cells) + " |")
    means = [np.mean([epe[(m, mode, s)] for s in sequences]) for m, mode in columns]
    lines.append("| **mean** | " + " | ".join(f"**{v:.3f}**" for v in means) + " |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=BACKENDS, default="dis")
    parser.add_argument(
        "--dis-presets", nargs="+", choices=tuple(DIS_PRESETS), default=list(DIS_PRESETS)
    )
    parser.add_argument("--checkpoint", help="NeuFlow weights (NeuFlow backends only)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="torch/OpenCV CPU threads")
    parser.add_argument("--reduced-scale", type=float, default=0.5)
    parser.add_argument("--data", type=pathlib.Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "benchmarks" / "results")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    rows = evaluate(args)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"reduced_scale": args.reduced_scale, "results": rows}
    (args.out / "middlebury_epe.json").write_text(json.dumps(report, indent=2))
    print()
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
