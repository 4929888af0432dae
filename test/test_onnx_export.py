"""ONNX export of NeuFlow v1/v2: onnxruntime reproduces the official and the PyTorch flow,
the command line writes and verifies files, and bad input fails with a clear message.

Tolerance: ONNX_TOLERANCE_PX = 1e-3 px (max abs flow difference). Both runtimes
compute in float32, so only summation order, kernels (oneDNN vs MLAS) and the
BatchNorm folding differ; measured differences are 3e-5..2e-4 px on flows of
10..100 px, i.e. a few float32 ulps accumulated through ~100 layers. 1e-3 leaves
>5x headroom for other CPUs, and is the tolerance the fixture tests of
test_models.py use for v2; an export fault (wrong op, constant baked from the
trace input, swapped frames) moves the flow by pixels.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from neuflow_weights import FIXTURE_DIR, make_state_dict, write_official_checkpoint

from neuflow_ros.flow.checkpoint import CheckpointError
from neuflow_ros.flow.onnx_export import ExportReport, VerificationReport, export_onnx, verify_onnx
from neuflow_ros.models import NeuFlowV1, NeuFlowV2
from neuflow_ros.tools import onnx_tool

ONNX_TOLERANCE_PX = 1e-3
FIXTURE_WIDTH, FIXTURE_HEIGHT = 272, 208
SMALL_WIDTH, SMALL_HEIGHT = 128, 96
NETWORKS = {"v1": NeuFlowV1, "v2": NeuFlowV2}
V1_SEED, V2_SEED = 4, 3
"""The seeds of the official-code fixture flows odd_flow_v1_seed4.npy and odd_flow_v2_seed3.npy
(odd_frame*.png, 272x208: an odd 17x13 grid at 1/16 scale)."""


def read_rgb(name: str) -> np.ndarray:
    """[1, 3, H, W] float32 RGB 0..255."""
    bgr = cv2.imread(str(FIXTURE_DIR / name), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return rgb.transpose(2, 0, 1)[None].astype(np.float32)


def pytorch_flow(version: str, seed: int, img0: np.ndarray, img1: np.ndarray) -> np.ndarray:
    """The reference: the network built directly from the state dict, BatchNorm not folded."""
    network = NETWORKS[version]()
    network.load_state_dict(make_state_dict(version, seed))
    with torch.no_grad():
        return network.eval()(torch.from_numpy(img0), torch.from_numpy(img1)).numpy()


def onnxruntime_flow(path, img0: np.ndarray, img1: np.ndarray) -> np.ndarray:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    session = onnxruntime.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"]
    )
    return session.run(["flow"], {"img0": img0, "img1": img1})[0]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return {
        "v1": str(write_official_checkpoint(folder / "v1.pth", "v1", V1_SEED)),
        "v2": str(write_official_checkpoint(folder / "v2.pth", "v2", V2_SEED)),
        "v1_other": str(write_official_checkpoint(folder / "v1_other.pth", "v1", 7)),
    }


@pytest.fixture(scope="module")
def v2_fixture_export(checkpoints, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "neuflow_v2.onnx"
    return export_onnx(checkpoints["v2"], path, FIXTURE_WIDTH, FIXTURE_HEIGHT)


def test_v2_export_has_static_shapes_opset_and_metadata(v2_fixture_export):
    report = v2_fixture_export
    assert (report.version, report.iterations, report.opset) == ("neuflow_v2", (1, 8), 17)
    model = onnx.load(str(report.path))
    shapes = {
        value.name: [dim.dim_value for dim in value.type.tensor_type.shape.dim]
        for value in [*model.graph.input, *model.graph.output]
    }
    assert shapes == {
        "img0": [1, 3, FIXTURE_HEIGHT, FIXTURE_WIDTH],
        "img1": [1, 3, FIXTURE_HEIGHT, FIXTURE_WIDTH],
        "flow": [1, 2, FIXTURE_HEIGHT, FIXTURE_WIDTH],
    }
    assert [(entry.domain, entry.version) for entry in model.opset_import] == [("", 17)]
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert metadata["neuflow_version"] == "neuflow_v2"
    assert (metadata["iters_s16"], metadata["iters_s8"]) == ("1", "8")


def test_v2_onnx_reproduces_the_official_flow(v2_fixture_export):
    """Against the official code's output (test_models.py ties our PyTorch model to it too)."""
    img0, img1 = read_rgb("odd_frame0.png"), read_rgb("odd_frame1.png")
    flow = onnxruntime_flow(v2_fixture_export.path, img0, img1)
    official = np.load(FIXTURE_DIR / "odd_flow_v2_seed3.npy").transpose(2, 0, 1)[None]
    assert np.abs(official).max() > 1.0, "a near-zero flow would make the comparison vacuous"
    assert np.abs(flow - official).max() <= ONNX_TOLERANCE_PX


def test_verify_onnx_accepts_the_exported_checkpoint(v2_fixture_export, checkpoints):
    report = verify_onnx(v2_fixture_export.path, checkpoints["v2"], threads=2)
    assert report.max_abs_diff <= ONNX_TOLERANCE_PX
    assert report.median_abs_diff <= report.max_abs_diff
    assert report.max_abs_flow > 1.0


def test_verify_onnx_rejects_a_checkpoint_of_the_other_version(v2_fixture_export, checkpoints):
    with pytest.raises(CheckpointError, match="neuflow_v2 was requested"):
        verify_onnx(v2_fixture_export.path, checkpoints["v1"])


def test_cli_exports_and_verifies_v1_with_batch_two(checkpoints, tmp_path, capsys):
    output = tmp_path / "v1.onnx"
    size = f"{SMALL_WIDTH}x{SMALL_HEIGHT}"
    exit_code = onnx_tool.main([checkpoints["v1"], str(output), "--size", size, "--batch", "2"])
    captured = capsys.readouterr()
    assert exit_code == onnx_tool.EXIT_OK, captured.err
    assert "NeuFlow v1" in captured.out
    assert "max |flow difference|" in captured.out
    # Two different crops of the real frames: each batch item must match its own PyTorch flow.
    crops = [(0, 0), (100, 140)]
    img0, img1 = (
        np.concatenate([frame[..., y : y + SMALL_HEIGHT, x : x + SMALL_WIDTH] for y, x in crops])
        for frame in (read_rgb("frame0.png"), read_rgb("frame1.png"))
    )
    flow = onnxruntime_flow(output, img0, img1)
    for item in range(2):
        reference = pytorch_flow("v1", V1_SEED, img0[item : item + 1], img1[item : item + 1])
        assert np.abs(flow[item : item + 1] - reference).max() <= ONNX_TOLERANCE_PX
    # The check is not vacuous: other weights give a clearly different flow.
    assert verify_onnx(output, checkpoints["v1_other"], threads=2).max_abs_diff > 0.1


def test_cli_reports_failed_verification_with_exit_1(tmp_path, monkeypatch, capsys):
    """Only the command's threshold logic: export and verification are stand-ins."""
    output = tmp_path / "v1.onnx"

    def exported(*_args, **_kwargs):
        return ExportReport(output, "neuflow_v1", 64, 32, 1, 17, True, None, 1000, 0.1)

    def far_off(*_args, **_kwargs):
        return VerificationReport(0.5, 0.2, 12.0, 0.1, 0.1)

    monkeypatch.setattr(onnx_tool, "export_onnx", exported)
    monkeypatch.setattr(onnx_tool, "verify_onnx", far_off)
    exit_code = onnx_tool.main(["v1.pth", str(output), "--size", "64x32", "--tolerance", "0.4"])
    assert exit_code == onnx_tool.EXIT_VERIFICATION_FAILED
    assert "differ by up to 0.5 px (tolerance 0.4 px)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("size", "message"),
    [("100x96", "multiples of 16"), ("128x16", "at least 32"), ("128by96", "WIDTHxHEIGHT")],
)
def test_cli_rejects_bad_size_with_one_line(checkpoints, tmp_path, capsys, size, message):
    output = tmp_path / "bad.onnx"
    exit_code = onnx_tool.main([checkpoints["v2"], str(output), "--size", size])
    error = capsys.readouterr().err
    assert exit_code == onnx_tool.EXIT_BAD_INPUT
    assert message in error
    assert error.count("\n") == 1 and error.startswith("neuflow-export-onnx: error:")
    assert not output.exists()


def test_cli_missing_checkpoint_exits_2(tmp_path, capsys):
    missing = tmp_path / "absent.pth"
    exit_code = onnx_tool.main([str(missing), str(tmp_path / "x.onnx"), "--size", "128x96"])
    assert exit_code == onnx_tool.EXIT_BAD_INPUT
    assert f"checkpoint file not found: {missing}" in capsys.readouterr().err


def test_export_missing_checkpoint_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        export_onnx(str(tmp_path / "absent.pth"), tmp_path / "x.onnx", 128, 96)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"iters_s8": 4}, "NeuFlow v2 only"),
        ({"opset": 15}, "opset must be between 16"),
        ({"batch": 0}, "batch must be at least 1"),
    ],
)
def test_export_rejects_bad_options(checkpoints, tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        export_onnx(checkpoints["v1"], tmp_path / "x.onnx", 128, 96, **arguments)


def test_export_rejects_output_that_is_not_onnx_or_has_no_folder(checkpoints, tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.onnx"):
        export_onnx(checkpoints["v2"], tmp_path / "model.trt", 128, 96)
    with pytest.raises(ValueError, match="output directory does not exist"):
        export_onnx(checkpoints["v2"], tmp_path / "missing" / "model.onnx", 128, 96)


def test_missing_onnxruntime_names_the_install_command(v2_fixture_export, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="pip install onnx onnxruntime"):
        verify_onnx(v2_fixture_export.path, "unused.pth")
