"""Export NeuFlow v1/v2 to ONNX at one fixed resolution and check the file against PyTorch.

The ONNX file is the bridge to TensorRT on a Jetson, which compiles the network
for that one GPU instead of running it op by op. Resolution and batch size are
baked into the graph on purpose: TensorRT builds its fastest kernels for
static shapes, and the node runs at one inference size anyway.

Exporter and opset, measured with torch 2.13 at 128x96 and 512x384 on a
2-core CPU:

- The TorchScript exporter (``dynamo=False``) is used. The dynamo exporter
  emits opset 18 and cannot convert these graphs down to 17 (onnx has no
  Pad 18 -> 17 adapter), it takes 5-8x longer (10-15 s instead of 1-3 s for
  v2), and its fake tensors end up in the model's grid cache. Both graphs run
  equally fast in onnxruntime. The TorchScript exporter is deprecated since
  torch 2.9; when it is removed, switch to dynamo with opset 18 (TensorRT 10,
  JetPack 6.1 and later, parses it).
- Opset 17 by default: v1's feature warping needs GridSample (opset >= 16),
  opset 17 keeps LayerNorm as one LayerNormalization node (at 16 it becomes a
  chain of ReduceMean/Pow/Sqrt that overflows easily in fp16), and 17 is the
  newest opset TensorRT 8.6 (JetPack 6.0) parses.

Each file carries metadata (network version, iteration counts) so that
`verify_onnx` runs PyTorch exactly as the graph was exported.
"""

from __future__ import annotations

import importlib
import inspect
import io
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from .. import models
from ..models.base import MIN_SIZE, SIZE_MULTIPLE
from .checkpoint import load_model

if TYPE_CHECKING:
    import onnx

MIN_OPSET = 16
MAX_OPSET = 20
DEFAULT_OPSET = 17
INPUT_NAMES = ("img0", "img1")
OUTPUT_NAME = "flow"
V2_DEFAULT_ITERATIONS = (1, 8)
INSTALL_HINT = "pip install onnx onnxruntime"
MAX_TEST_SHIFT_PX = 4.0
"""Largest synthetic motion in `textured_pair`: well inside both networks' search range."""
_TEXTURE_WAVES = 24
_TEXTURE_LOG_FREQUENCIES = (math.log(1 / 64), math.log(1 / 4))
"""Wave frequencies (cycles per pixel) are log-uniform in this range: coarse and fine detail."""


@dataclass(frozen=True)
class ExportReport:
    """What was written; `iterations` is (iters_s16, iters_s8) for v2 and None for v1."""

    path: Path
    version: str
    width: int
    height: int
    batch: int
    opset: int
    batchnorm_folded: bool
    iterations: tuple[int, int] | None
    file_bytes: int
    seconds: float


@dataclass(frozen=True)
class VerificationReport:
    """onnxruntime vs PyTorch on one textured input, differences in flow pixels."""

    max_abs_diff: float
    median_abs_diff: float
    max_abs_flow: float
    onnxruntime_seconds: float
    pytorch_seconds: float


class _FixedIterations(nn.Module):
    """Binds v2's iteration counts, which are Python ints and so cannot be graph inputs."""

    def __init__(self, network: nn.Module, iterations: tuple[int, int]) -> None:
        super().__init__()
        self.network = network
        self.iterations = iterations

    def forward(self, img0: Tensor, img1: Tensor) -> Tensor:
        iters_s16, iters_s8 = self.iterations
        return self.network(img0, img1, iters_s16=iters_s16, iters_s8=iters_s8)


def export_onnx(
    checkpoint: str,
    output: Path,
    width: int,
    height: int,
    batch: int = 1,
    opset: int = DEFAULT_OPSET,
    fold_batchnorm: bool = True,
    iters_s16: int | None = None,
    iters_s8: int | None = None,
) -> ExportReport:
    """Write the checkpoint's network as ONNX: inputs img0, img1 [batch, 3, height, width]
    float32 RGB 0..255, output flow [batch, 2, height, width] in pixels.

    Iteration counts apply to v2 only (default 1 and 8, as the node runs it).
    The file is written atomically, so a failed export never leaves a
    truncated model behind.
    """
    check_export_size(width, height, batch)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(
            f"opset must be between {MIN_OPSET} (GridSample) and {MAX_OPSET} "
            f"(newest the exporter writes), got {opset}"
        )
    output = Path(output)
    if output.suffix != ".onnx":
        raise ValueError(f"output file must end in .onnx, got {output}")
    if not output.parent.is_dir():
        raise ValueError(f"output directory does not exist: {output.parent}")
    onnx = _require("onnx")
    version, network = load_model(checkpoint)
    iterations = _iterations_for(version, iters_s16, iters_s8)
    if fold_batchnorm:
        network = models.fold_batchnorm(network)
    exported = network if iterations is None else _FixedIterations(network, iterations)

    started = time.perf_counter()
    example = tuple(torch.zeros(batch, 3, height, width) for _ in INPUT_NAMES)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Expected and harmless here: the tracer flags forward()'s shape checks (constants at a
        # fixed size), the exporter's deprecation is discussed above, and the strided slices
        # left unfolded are constant-folded by TensorRT and onnxruntime when they load the file.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*feature will be removed.*")
        warnings.filterwarnings("ignore", message="Constant folding.*")
        torch.onnx.export(
            exported.eval(),
            example,
            buffer,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            do_constant_folding=True,
            **_torchscript_exporter_choice(),
        )
    model = onnx.load_from_string(buffer.getvalue())
    metadata = {"neuflow_version": version, "input": "RGB float32 0..255", "flow_unit": "pixel"}
    if iterations is not None:
        metadata.update(iters_s16=str(iterations[0]), iters_s8=str(iterations[1]))
    onnx.helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    _write_atomically(output, model.SerializeToString())
    return ExportReport(
        path=output,
        version=version,
        width=width,
        height=height,
        batch=batch,
        opset=opset,
        batchnorm_folded=fold_batchnorm,
        iterations=iterations,
        file_bytes=output.stat().st_size,
        seconds=time.perf_counter() - started,
    )


def verify_onnx(
    onnx_path: Path, checkpoint: str, seed: int = 0, threads: int | None = None
) -> VerificationReport:
    """Run the file in onnxruntime (CPU) and the checkpoint in PyTorch on the same textured pair.

    PyTorch runs the checkpoint as loaded (BatchNorm not folded), so the
    difference covers everything the export changed. Size, batch and v2's
    iteration counts are read from the file.
    """
    onnx = _require("onnx")
    onnxruntime = _require("onnxruntime")
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ValueError(f"ONNX file not found: {onnx_path}")
    model = onnx.load(str(onnx_path), load_external_data=False)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    if "neuflow_version" not in metadata:
        raise ValueError(f"{onnx_path} has no neuflow_version metadata: not written by export_onnx")
    batch, _, height, width = _static_input_shape(model, onnx_path)
    _, network = load_model(checkpoint, expected_version=metadata["neuflow_version"])
    options = {}
    if "iters_s16" in metadata:
        options = {"iters_s16": int(metadata["iters_s16"]), "iters_s8": int(metadata["iters_s8"])}
    img0, img1 = textured_pair(width, height, batch, seed)

    session_options = onnxruntime.SessionOptions()
    if threads is not None:
        session_options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(
        str(onnx_path), session_options, providers=["CPUExecutionProvider"]
    )
    started = time.perf_counter()
    (onnx_flow,) = session.run([OUTPUT_NAME], {INPUT_NAMES[0]: img0, INPUT_NAMES[1]: img1})
    onnxruntime_seconds = time.perf_counter() - started
    started = time.perf_counter()
    with torch.inference_mode():
        torch_flow = network(torch.from_numpy(img0), torch.from_numpy(img1), **options).numpy()
    pytorch_seconds = time.perf_counter() - started
    difference = np.abs(onnx_flow.astype(np.float64) - torch_flow)
    return VerificationReport(
        max_abs_diff=float(difference.max()),
        median_abs_diff=float(np.median(difference)),
        max_abs_flow=float(np.abs(torch_flow).max()),
        onnxruntime_seconds=onnxruntime_seconds,
        pytorch_seconds=pytorch_seconds,
    )


def textured_pair(
    width: int, height: int, batch: int = 1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two float32 [batch, 3, height, width] RGB images (0..255) of one texture, the second
    translated by a sub-pixel shift of up to MAX_TEST_SHIFT_PX per item.

    Zeros or flat images would leave softmaxes uniform and correlations empty,
    hiding export errors; a multi-scale sum of plane waves is evaluated at moved
    coordinates instead of resampled, so frame 1 has no interpolation blur.
    """
    rng = np.random.default_rng(seed)
    rows = np.arange(height, dtype=np.float64)[:, None]
    cols = np.arange(width, dtype=np.float64)[None, :]
    firsts, seconds = [], []
    for _ in range(batch):
        magnitudes = np.exp(rng.uniform(*_TEXTURE_LOG_FREQUENCIES, size=_TEXTURE_WAVES))
        angles = rng.uniform(0.0, 2 * math.pi, size=_TEXTURE_WAVES)
        waves = _TextureWaves(
            frequencies=np.stack([np.cos(angles), np.sin(angles)], axis=1) * magnitudes[:, None],
            phases=rng.uniform(0.0, 2 * math.pi, size=(3, _TEXTURE_WAVES)),
            amplitudes=rng.uniform(0.5, 1.0, size=(3, _TEXTURE_WAVES)) / magnitudes**0.75,
        )
        shift_x, shift_y = rng.uniform(-MAX_TEST_SHIFT_PX, MAX_TEST_SHIFT_PX, size=2)
        firsts.append(waves.render(cols, rows))
        seconds.append(waves.render(cols - shift_x, rows - shift_y))
    return np.stack(firsts).astype(np.float32), np.stack(seconds).astype(np.float32)


@dataclass(frozen=True)
class _TextureWaves:
    """Per-channel sums of plane waves; `amplitudes` and `phases` are [3, waves].

    Amplitudes fall with frequency, roughly like natural images, so large
    structures carry the contrast and fine waves add detail; the sum is
    scaled by its standard deviation to fill most of 0..255.
    """

    frequencies: np.ndarray
    phases: np.ndarray
    amplitudes: np.ndarray

    def render(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """[3, h, w] in 0..255 at coordinates x [1, w] and y [h, 1] (pixels)."""
        channels = 0.0
        for wave, (fx, fy) in enumerate(self.frequencies):
            argument = 2 * math.pi * (fx * x + fy * y)
            channels = channels + self.amplitudes[:, wave, None, None] * np.sin(
                argument[None] + self.phases[:, wave, None, None]
            )
        deviation = np.sqrt((self.amplitudes**2).sum(axis=1) / 2)[:, None, None]
        return np.clip(127.5 + 127.5 * channels / (2.5 * deviation), 0.0, 255.0)


def check_export_size(width: int, height: int, batch: int) -> None:
    """Reject sizes NeuFlow cannot run, before any slow loading or tracing."""
    if width % SIZE_MULTIPLE or height % SIZE_MULTIPLE or width < MIN_SIZE or height < MIN_SIZE:
        raise ValueError(
            f"width and height must be multiples of {SIZE_MULTIPLE} and at least {MIN_SIZE}, "
            f"got {width}x{height} (WxH)"
        )
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")


def _iterations_for(
    version: str, iters_s16: int | None, iters_s8: int | None
) -> tuple[int, int] | None:
    if version == "neuflow_v1":
        if iters_s16 is not None or iters_s8 is not None:
            raise ValueError("iteration counts apply to NeuFlow v2 only; this checkpoint is v1")
        return None
    default_s16, default_s8 = V2_DEFAULT_ITERATIONS
    iterations = (
        default_s16 if iters_s16 is None else iters_s16,
        default_s8 if iters_s8 is None else iters_s8,
    )
    if min(iterations) < 0:
        raise ValueError(f"iteration counts must be >= 0, got {iterations}")
    return iterations


def _torchscript_exporter_choice() -> dict[str, bool]:
    """Select the TorchScript exporter on every supported torch.

    torch 2.9 made dynamo the default, so it must be turned off by name there;
    torch < 2.5 (JetPack 6.0 ships 2.3) has only the TorchScript exporter and
    rejects the ``dynamo`` argument.
    """
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        return {"dynamo": False}
    return {}


def _static_input_shape(model: onnx.ModelProto, onnx_path: Path) -> tuple[int, int, int, int]:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = tuple(dim.dim_value for dim in dims)
    if len(shape) != 4 or not all(shape):
        raise ValueError(f"{onnx_path}: expected a static [B, 3, H, W] input, got {shape}")
    return shape


def _write_atomically(path: Path, content: bytes) -> None:
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        os.replace(temp_name, path)
    finally:
        Path(temp_name).unlink(missing_ok=True)


def _require(module_name: str) -> ModuleType:
    """Import an optional dependency, naming the install command if it is missing."""
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"ONNX export needs the '{module_name}' package, which is not installed: "
            f"{INSTALL_HINT}"
        ) from error
