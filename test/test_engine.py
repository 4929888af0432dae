"""Tests for the flow engine: DIS accuracy on known motion, and the NeuFlow
paths (batching, backward flow, colour orders, sizes) against references
built here from the bare network with numpy/OpenCV preprocessing.

NeuFlow runs with random weights: they predict no meaningful flow, but any
mistake in the plumbing around the network changes its output.
"""

from __future__ import annotations

import gc
import itertools
import logging
import threading
import time
import weakref
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from neuflow_ros.flow.bounded_cache import BoundedCache
from neuflow_ros.flow.checkpoint import CheckpointError
from neuflow_ros.flow.engine import (
    EngineConfig,
    FlowEngine,
    FrameError,
    FramePair,
    PendingFlow,
    config_to_run,
    create_engine,
    min_input_side,
)
from neuflow_ros.flow.frame_geometry import flow_pixel_to_input_point, plan_geometry
from neuflow_ros.models import NeuFlowV1, NeuFlowV2

WIDTH, HEIGHT = 128, 96
BORDER = 16  # DIS is unreliable where the shifted texture leaves the image
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
NETWORKS = {"neuflow_v2": NeuFlowV2, "neuflow_v1": NeuFlowV1}


def smooth_texture(height: int, width: int, seed: int, channels: int = 1) -> np.ndarray:
    """Band-limited noise: enough structure everywhere, smooth enough for sub-pixel shifts."""
    noise = np.random.default_rng(seed).random((height, width, channels), dtype=np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), 2.0).reshape(height, width, channels)
    low, high = blurred.min(), blurred.max()
    image = np.round((blurred - low) / (high - low) * 255).astype(np.uint8)
    return image[:, :, 0] if channels == 1 else image


def translate(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Content moves by (+dx, +dy): the true flow image -> result is (dx, dy) everywhere."""
    height, width = image.shape[:2]
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )


def interior_error(flow: np.ndarray, dx: float, dy: float, border: int = BORDER) -> np.ndarray:
    inner = flow[border:-border, border:-border]
    return np.hypot(inner[..., 0] - dx, inner[..., 1] - dy)


def color_pair(seed: int, width: int = WIDTH, height: int = HEIGHT) -> tuple:
    frame0 = smooth_texture(height, width, seed, channels=3)
    return frame0, translate(frame0, 1.5, -0.75)


# --- references built from the bare network -------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """Official-format checkpoints with random weights and non-trivial BN statistics."""
    folder = tmp_path_factory.mktemp("weights")
    paths = {}
    for seed, (version, network) in enumerate(NETWORKS.items()):
        torch.manual_seed(seed)
        state = network().state_dict()
        generator = torch.Generator().manual_seed(seed)
        for key, value in state.items():
            if key.endswith("running_mean"):
                value.uniform_(-0.1, 0.1, generator=generator)
            elif key.endswith("running_var"):
                value.uniform_(0.8, 1.2, generator=generator)
        paths[version] = str(folder / f"{version}.pth")
        torch.save({"model": state}, paths[version])
    return paths


@pytest.fixture(scope="module")
def networks(checkpoints) -> dict[str, torch.nn.Module]:
    loaded = {}
    for version, network in NETWORKS.items():
        model = network()
        model.load_state_dict(torch.load(checkpoints[version], weights_only=True)["model"])
        loaded[version] = model.eval()
    return loaded


@pytest.fixture(scope="module")
def engines(checkpoints) -> dict[str, FlowEngine]:
    """Unfolded BN so the engine computes exactly what the bare network does."""
    return {
        version: FlowEngine(
            EngineConfig(backend=version, checkpoint=path, device="cpu", fold_batchnorm=False)
        )
        for version, path in checkpoints.items()
    }


def network_flow(network, rgb0: np.ndarray, rgb1: np.ndarray, **options) -> np.ndarray:
    """Bare network on float RGB images whose sides are multiples of 16 -> [h, w, 2]."""

    def tensor(image):
        pixels = np.ascontiguousarray(image, dtype=np.float32)
        return torch.from_numpy(pixels).permute(2, 0, 1)[None]

    with torch.inference_mode():
        flow = network(tensor(rgb0), tensor(rgb1), **options)
    return flow[0].permute(1, 2, 0).numpy()


def padded_reference(network, rgb0: np.ndarray, rgb1: np.ndarray) -> np.ndarray:
    """Edge-replicate right/bottom up to multiples of 16, run, crop back."""
    height, width = rgb0.shape[:2]
    pad = ((0, -height % 16), (0, -width % 16), (0, 0))
    flow = network_flow(network, np.pad(rgb0, pad, mode="edge"), np.pad(rgb1, pad, mode="edge"))
    return flow[:height, :width]


# --- frame geometry -------------------------------------------------------------------------


def test_flow_pixel_mapping_matches_cv2_resize_convention():
    ramp = np.tile(np.arange(WIDTH, dtype=np.float32), (HEIGHT, 1))
    small = cv2.resize(ramp, (WIDTH // 4, HEIGHT // 2), interpolation=cv2.INTER_LINEAR)
    for fx in (0, 5, WIDTH // 4 - 1):
        x, _ = flow_pixel_to_input_point(fx, 0, (WIDTH, HEIGHT), (WIDTH // 4, HEIGHT // 2))
        assert small[0, fx] == pytest.approx(x, abs=1e-4)
    assert flow_pixel_to_input_point(0, 0, (128, 96), (64, 48)) == (0.5, 0.5)


def test_plan_geometry_pads_to_multiples_of_16_or_resizes():
    padded = plan_geometry(130, 97, None)
    assert (padded.grid_width, padded.grid_height) == (144, 112)
    assert (padded.pad_right, padded.pad_bottom, padded.vector_scale) == (14, 15, (1.0, 1.0))
    resized = plan_geometry(130, 97, (64, 48))
    assert resized.resized and resized.vector_scale == (130 / 64, 97 / 48)
    assert resized.output_size("inference") == (64, 48)
    assert resized.output_size("input") == (130, 97)
    assert not plan_geometry(128, 96, (128, 96)).resized


def test_engine_names_the_grid_that_batches_cameras_together():
    native = FlowEngine(EngineConfig(backend="dis"))
    assert native.batch_grid(130, 97) == native.batch_grid(144, 112) == (144, 112)
    fixed = FlowEngine(EngineConfig(backend="dis", inference_size=(64, 48)))
    assert fixed.batch_grid(130, 97) == fixed.batch_grid(640, 480) == (64, 48)


def test_bounded_cache_reuses_and_evicts_least_recently_used():
    cache: BoundedCache[list] = BoundedCache(2)
    first = cache.get_or_create("a", list)
    assert cache.get_or_create("a", list) is first
    cache.get_or_create("b", list)
    cache.get_or_create("a", list)  # "b" is now the least recently used
    cache.get_or_create("c", list)
    assert len(cache) == 2
    assert cache.get_or_create("a", list) is first
    with pytest.raises(ValueError, match="max_entries"):
        BoundedCache(0)


def test_bounded_cache_keeps_the_weight_within_its_budget_but_always_the_newest():
    cache: BoundedCache[str] = BoundedCache(8, max_weight=100)
    cache.get_or_create("small", lambda: "s", weight=30)
    cache.get_or_create("medium", lambda: "m", weight=60)
    assert len(cache) == 2 and cache.weight == 90
    cache.get_or_create("large", lambda: "l", weight=40)  # 130 > 100: the oldest goes
    assert cache.get("small") is None
    assert (cache.get("medium"), cache.get("large"), cache.weight) == ("m", "l", 100)
    cache.get_or_create("huge", lambda: "h", weight=500)  # over budget alone: kept, alone
    assert len(cache) == 1 and cache.get("huge") == "h" and cache.weight == 500
    cache.get_or_create("tiny", lambda: "t", weight=1)
    assert len(cache) == 1 and cache.weight == 1


# --- DIS ------------------------------------------------------------------------------------


def test_dis_recovers_subpixel_translation():
    frame0 = smooth_texture(HEIGHT, WIDTH, seed=1)
    frame1 = translate(frame0, 1.3, -0.6)
    engine = FlowEngine(EngineConfig(dis_preset="medium"))
    (result,) = engine.compute([FramePair(frame0, frame1, "mono")], backward=True)
    assert result.forward.shape == (HEIGHT, WIDTH, 2) and result.forward.dtype == np.float32
    assert result.input_size == (WIDTH, HEIGHT)
    assert np.median(interior_error(result.forward, 1.3, -0.6)) < 0.1
    assert np.median(interior_error(result.backward, -1.3, 0.6)) < 0.1


def test_dis_default_preset_is_usable():
    frame0 = smooth_texture(HEIGHT, WIDTH, seed=2)
    (result,) = FlowEngine(EngineConfig()).compute(
        [FramePair(frame0, translate(frame0, -2.2, 1.1), "mono")]
    )
    assert result.backward is None
    assert np.median(interior_error(result.forward, -2.2, 1.1)) < 0.3


def test_dis_colour_orders_all_reduce_to_the_same_gray():
    rgb0, rgb1 = color_pair(seed=3)
    engine = FlowEngine(EngineConfig())
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in (rgb0, rgb1)]
    rgb, bgr, mono, mono_3d = engine.compute(
        [
            FramePair(rgb0, rgb1, "rgb"),
            FramePair(rgb0[:, :, ::-1], rgb1[:, :, ::-1], "bgr"),
            FramePair(gray[0], gray[1], "mono"),
            FramePair(gray[0][:, :, None], gray[1][:, :, None], "mono"),
        ]
    )
    np.testing.assert_array_equal(rgb.forward, bgr.forward)
    np.testing.assert_array_equal(rgb.forward, mono.forward)
    np.testing.assert_array_equal(rgb.forward, mono_3d.forward)


@pytest.mark.parametrize("inference_size", [(64, 48), (64, 96)])
def test_dis_reduced_inference_size_reports_input_pixels(inference_size):
    frame0 = smooth_texture(HEIGHT, WIDTH, seed=4)
    frame1 = translate(frame0, 2.4, -1.2)
    engine = FlowEngine(EngineConfig(dis_preset="medium", inference_size=inference_size))
    pair = FramePair(frame0, frame1, "mono")
    (full,) = engine.compute([pair], output_grid="input")
    (grid,) = engine.compute([pair], output_grid="inference")
    assert full.forward.shape == (HEIGHT, WIDTH, 2)
    assert grid.forward.shape == (inference_size[1], inference_size[0], 2)
    assert np.median(interior_error(full.forward, 2.4, -1.2)) < 0.25
    assert np.median(interior_error(grid.forward, 2.4, -1.2, border=8)) < 0.25


def test_dis_odd_size_keeps_input_shape():
    frame0 = smooth_texture(97, 130, seed=5)
    (result,) = FlowEngine(EngineConfig(dis_preset="medium")).compute(
        [FramePair(frame0, translate(frame0, 0.8, 0.4), "mono")], output_grid="inference"
    )
    assert result.forward.shape == (97, 130, 2)
    assert np.median(interior_error(result.forward, 0.8, 0.4)) < 0.1


def test_dis_accepts_strided_views_and_leaves_inputs_alone():
    rgb0, rgb1 = color_pair(seed=6)
    # Camera-style buffers: 4 bytes per pixel and padded rows.
    buffers = [np.zeros((HEIGHT, WIDTH + 8, 4), np.uint8) for _ in range(2)]
    for buffer, frame in zip(buffers, (rgb0, rgb1), strict=True):
        buffer[:, :WIDTH, :3] = frame
    views = [buffer[:, :WIDTH, :3] for buffer in buffers]
    snapshots = [buffer.copy() for buffer in buffers]
    engine = FlowEngine(EngineConfig())
    (strided,) = engine.compute([FramePair(*views, "rgb")], backward=True)
    (packed,) = engine.compute([FramePair(rgb0, rgb1, "rgb")], backward=True)
    np.testing.assert_array_equal(strided.forward, packed.forward)
    for buffer, snapshot in zip(buffers, snapshots, strict=True):
        np.testing.assert_array_equal(buffer, snapshot)


@pytest.mark.parametrize(("preset", "smallest"), [("fast", 32), ("ultrafast", 32), ("medium", 16)])
def test_dis_refuses_frames_below_its_minimum_instead_of_crashing(preset, smallest):
    engine = FlowEngine(EngineConfig(backend="dis", dis_preset=preset))
    assert min_input_side(engine.config) == smallest
    # 400x26 crashed the process (SIGSEGV) inside OpenCV's DIS with 'fast'.
    for width, height in ((smallest - 1, smallest - 1), (400, smallest - 1), (smallest - 5, 400)):
        frame = smooth_texture(height, width, seed=1)
        with pytest.raises(FrameError, match=f"at least {smallest}"):
            engine.compute([FramePair(frame, frame, "mono")])
    frame0 = smooth_texture(smallest, 400, seed=2)
    (result,) = engine.compute([FramePair(frame0, frame0, "mono")])
    assert result.forward.shape == (smallest, 400, 2)


def test_minimum_input_side_follows_the_backend_that_will_run():
    assert min_input_side(EngineConfig(backend="dis", inference_size=(64, 48))) == 8
    assert min_input_side(EngineConfig(backend="neuflow_v1", checkpoint="x.pth")) == 8
    without_weights = EngineConfig(backend="neuflow_v2", device="cuda", dis_preset="medium")
    fallback = config_to_run(without_weights)
    assert (fallback.backend, fallback.device) == ("dis", "cpu")
    assert min_input_side(fallback) == 16
    assert config_to_run(without_weights, allow_dis_fallback=False) is without_weights


def test_dis_warm_up_and_cpu_diagnostics():
    engine = FlowEngine(EngineConfig())
    engine.warm_up(HEIGHT, WIDTH, "bgr", batch=2, backward=True)
    assert (engine.backend, engine.device, engine.precision) == ("dis", "cpu", "fp32")
    assert engine.gpu_memory_bytes() is None
    assert not engine.submits_asynchronously
    with pytest.raises(ValueError, match="color_order"):
        engine.warm_up(HEIGHT, WIDTH, "rgba")


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "raft"}, "backend must be one of"),
        ({"inference_size": (100, 96)}, "multiple of 16"),
        ({"inference_size": (16, 96)}, "at least 32"),
        ({"inference_size": (128,)}, r"\(width, height\)"),
        ({"inference_size": (128.0, 96)}, "must be an int"),
        ({"device": "gpu"}, "device must be"),
        ({"precision": "fp8"}, "precision must be"),
        ({"backend": "neuflow_v2", "device": "cpu", "precision": "fp16"}, "needs CUDA"),
        ({"backend": "dis", "device": "cuda"}, "CPU only"),
        ({"backend": "neuflow_v2", "iters_s8": 0}, "iters_s8"),
        ({"num_threads": 0}, "num_threads"),
        ({"dis_preset": "slow"}, "dis_preset"),
        ({"checkpoint_sha256": "abc"}, "64 hex digits"),
        ({"checkpoint": ""}, "non-empty"),
    ],
)
def test_config_rejects_bad_values(options, message):
    with pytest.raises(ValueError, match=message):
        EngineConfig(**options)


def test_config_normalises_inference_size_lists():
    assert EngineConfig(inference_size=[64, 48]).inference_size == (64, 48)


@pytest.mark.parametrize(
    ("frames", "color_order", "message"),
    [
        ((np.zeros((HEIGHT, WIDTH), np.float32),) * 2, "mono", "uint8"),
        ((np.zeros((HEIGHT, WIDTH, 3), np.uint8),) * 2, "mono", "HxW or HxWx1"),
        ((np.zeros((HEIGHT, WIDTH, 4), np.uint8),) * 2, "rgb", "HxWx3"),
        ((np.zeros((HEIGHT, WIDTH), np.uint8), np.zeros((HEIGHT, 64), np.uint8)), "mono", "differ"),
        ((np.zeros((HEIGHT, WIDTH), np.uint8),) * 2, "yuv", "color_order"),
        ((np.zeros((4, WIDTH), np.uint8),) * 2, "mono", "at least"),
        (([[0]], [[0]]), "mono", "numpy array"),
    ],
)
def test_frame_pair_rejects_bad_frames(frames, color_order, message):
    with pytest.raises(FrameError, match=message):
        FramePair(*frames, color_order)


def test_compute_rejects_bad_arguments():
    engine = FlowEngine(EngineConfig())
    frame = np.zeros((HEIGHT, WIDTH), np.uint8)
    with pytest.raises(TypeError, match="FramePair"):
        engine.compute([(frame, frame)])
    with pytest.raises(ValueError, match="output_grid"):
        engine.compute([FramePair(frame, frame, "mono")], output_grid="camera")
    assert engine.compute([]) == []


def test_submit_checks_arguments_at_once_and_hands_over_results_once():
    engine = FlowEngine(EngineConfig())
    frame = smooth_texture(HEIGHT, WIDTH, seed=9)
    with pytest.raises(TypeError, match="FramePair"):
        engine.submit([(frame, frame)])
    assert engine.submit([]).result() == []
    pending = engine.submit([FramePair(frame, translate(frame, 1.5, -0.75), "mono")])
    (result,) = pending.result()
    assert pending.result()[0] is result
    assert np.median(interior_error(result.forward, 1.5, -0.75)) < 0.1


def test_pending_flow_finishes_once_and_repeats_its_error():
    calls = []

    def finish():
        calls.append("finish")
        raise RuntimeError("CUDA error: device lost")

    pending = PendingFlow(finish)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="device lost"):
            pending.result()
    assert calls == ["finish"]


# --- checkpoints and fallback ---------------------------------------------------------------


def test_missing_checkpoint_falls_back_to_dis_with_a_warning(caplog):
    logger = logging.getLogger("test_engine.fallback")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        engine = create_engine(EngineConfig(backend="neuflow_v2"), logger=logger)
    assert engine.backend == "dis" and engine.device == "cpu"
    assert "neuflow_mixed.pth" in caplog.text and "checkpoint" in caplog.text
    frame0 = smooth_texture(HEIGHT, WIDTH, seed=7)
    (result,) = engine.compute([FramePair(frame0, translate(frame0, 1.0, 0.5), "mono")])
    assert np.median(interior_error(result.forward, 1.0, 0.5)) < 0.3


def test_missing_checkpoint_without_fallback_is_an_error():
    with pytest.raises(ValueError, match=r"neuflow_mixed\.pth"):
        create_engine(EngineConfig(backend="neuflow_v1"), allow_dis_fallback=False)
    with pytest.raises(ValueError, match="needs a checkpoint"):
        FlowEngine(EngineConfig(backend="neuflow_v2"))


def test_unloadable_checkpoint_raises_instead_of_falling_back(tmp_path, checkpoints):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        create_engine(EngineConfig(backend="neuflow_v2", checkpoint=str(garbage)))
    with pytest.raises(CheckpointError):
        create_engine(EngineConfig(backend="neuflow_v2", checkpoint=checkpoints["neuflow_v1"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the no-CUDA fallback")
def test_fp16_on_auto_without_cuda_runs_fp32_with_a_warning(checkpoints, caplog):
    config = EngineConfig(backend="neuflow_v1", checkpoint=checkpoints["neuflow_v1"])
    with caplog.at_level(logging.WARNING):
        engine = FlowEngine(replace(config, precision="fp16"))
    assert (engine.device, engine.precision) == ("cpu", "fp32")
    assert "fp16" in caplog.text
    with pytest.raises(ValueError, match="CUDA is not available"):
        FlowEngine(replace(config, device="cuda"))


# --- NeuFlow through the engine -------------------------------------------------------------


@pytest.mark.parametrize("version", NETWORKS)
def test_neuflow_odd_size_matches_padded_reference(version, engines, networks):
    rgb0, rgb1 = color_pair(seed=8, width=130, height=97)
    (result,) = engines[version].compute([FramePair(rgb0, rgb1, "rgb")])
    assert result.forward.shape == (97, 130, 2)
    expected = padded_reference(networks[version], rgb0, rgb1)
    np.testing.assert_allclose(result.forward, expected, atol=1e-4)


def test_neuflow_colour_orders(engines):
    rgb0, rgb1 = color_pair(seed=9)
    gray0, gray1 = rgb0[:, :, 0], rgb1[:, :, 0]
    gray_rgb = [np.repeat(gray[:, :, None], 3, axis=2) for gray in (gray0, gray1)]
    rgb, bgr, lied, mono, replicated = engines["neuflow_v2"].compute(
        [
            FramePair(rgb0, rgb1, "rgb"),
            FramePair(rgb0[:, :, ::-1], rgb1[:, :, ::-1], "bgr"),
            FramePair(rgb0[:, :, ::-1], rgb1[:, :, ::-1], "rgb"),
            FramePair(gray0, gray1, "mono"),
            FramePair(*gray_rgb, "rgb"),
        ]
    )
    np.testing.assert_allclose(bgr.forward, rgb.forward, atol=1e-4)
    assert np.abs(lied.forward - rgb.forward).mean() > 1e-2
    np.testing.assert_allclose(mono.forward, replicated.forward, atol=1e-4)


def test_neuflow_batch_equals_individual_calls(engines):
    engine = engines["neuflow_v2"]
    pairs = [FramePair(*color_pair(seed), "rgb") for seed in (10, 11, 12)]
    batched = engine.compute(pairs)
    for pair, result in zip(pairs, batched, strict=True):
        (single,) = engine.compute([pair])
        np.testing.assert_allclose(result.forward, single.forward, atol=1e-4)


@pytest.mark.parametrize("version", NETWORKS)
def test_neuflow_backward_in_same_pass_equals_swapped_call(version, engines):
    engine = engines[version]
    frame0, frame1 = color_pair(seed=13)
    (both,) = engine.compute([FramePair(frame0, frame1, "rgb")], backward=True)
    (forward,) = engine.compute([FramePair(frame0, frame1, "rgb")])
    (swapped,) = engine.compute([FramePair(frame1, frame0, "rgb")])
    np.testing.assert_allclose(both.forward, forward.forward, atol=1e-4)
    np.testing.assert_allclose(both.backward, swapped.forward, atol=1e-4)
    # Random v1 weights predict nearly uniform flow; the swap still shows far above tolerance.
    assert np.abs(both.backward - both.forward).max() > 1e-3


@pytest.mark.parametrize("version", NETWORKS)
@pytest.mark.parametrize("size", [(128, 96), (130, 97)])
def test_neuflow_flow_arrays_are_contiguous_and_the_callers_own(version, engines, size):
    """Consumers (OpenCV, message builders) want C-contiguous float32 (h, w, 2); and
    an array must not be a view of network output, which CUDA graphs overwrite."""
    width, height = size
    pairs = [FramePair(*color_pair(seed, width, height), "rgb") for seed in (17, 18)]
    results = engines[version].compute(pairs, backward=True)
    arrays = [array for result in results for array in (result.forward, result.backward)]
    for array in arrays:
        assert array.dtype == np.float32
        assert array.shape == (height, width, 2)
        assert array.flags.c_contiguous
    for first, second in itertools.combinations(arrays, 2):
        assert not np.shares_memory(first, second)


def test_neuflow_mixed_sizes_and_colour_orders_in_one_call(engines):
    engine = engines["neuflow_v1"]
    big = color_pair(seed=14)
    odd = color_pair(seed=15, width=130, height=97)
    gray = [frame[:, :, 1] for frame in color_pair(seed=16)]
    pairs = [
        FramePair(*big, "rgb"),
        FramePair(*odd, "bgr"),
        FramePair(*gray, "mono"),
        FramePair(big[1], big[0], "rgb"),
    ]
    together = engine.compute(pairs, backward=True)
    for pair, result in zip(pairs, together, strict=True):
        (alone,) = engine.compute([pair], backward=True)
        assert result.forward.shape == (*pair.previous.shape[:2], 2)
        np.testing.assert_allclose(result.forward, alone.forward, atol=1e-4)
        np.testing.assert_allclose(result.backward, alone.backward, atol=1e-4)


def test_neuflow_upscaled_inference_matches_cv2_reference(checkpoints, networks):
    """Enlarging 64x48 -> 128x96: bilinear in cv2 and torch agree, so the reference
    uses cv2 for both resampling steps and scales the vectors by hand."""
    small0, small1 = (frame[::2, ::2] for frame in color_pair(seed=17))
    engine = FlowEngine(
        EngineConfig(
            backend="neuflow_v1",
            checkpoint=checkpoints["neuflow_v1"],
            device="cpu",
            fold_batchnorm=False,
            inference_size=(WIDTH, HEIGHT),
        )
    )
    pair = FramePair(small0, small1, "rgb")
    (at_input,) = engine.compute([pair], output_grid="input")
    (at_grid,) = engine.compute([pair], output_grid="inference")

    def enlarge(image):
        return cv2.resize(image.astype(np.float32), (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR)

    grid_flow = network_flow(networks["neuflow_v1"], enlarge(small0), enlarge(small1)) * 0.5
    np.testing.assert_allclose(at_grid.forward, grid_flow, atol=1e-3)
    expected = cv2.resize(grid_flow, (WIDTH // 2, HEIGHT // 2), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(at_input.forward, expected, atol=1e-3)
    assert at_input.input_size == (WIDTH // 2, HEIGHT // 2)


def test_neuflow_fixed_inference_size_batches_different_cameras(checkpoints):
    engine = FlowEngine(
        EngineConfig(
            backend="neuflow_v2",
            checkpoint=checkpoints["neuflow_v2"],
            device="cpu",
            inference_size=(64, 48),
        )
    )
    pairs = [
        FramePair(*color_pair(seed=18), "rgb"),
        FramePair(*color_pair(seed=19, width=130, height=97), "rgb"),
    ]
    together = engine.compute(pairs, output_grid="inference")
    for pair, result in zip(pairs, together, strict=True):
        (alone,) = engine.compute([pair], output_grid="inference")
        assert result.forward.shape == (48, 64, 2)
        np.testing.assert_allclose(result.forward, alone.forward, atol=1e-4)


def test_neuflow_passes_iterations_and_folds_batchnorm(checkpoints, networks):
    rgb0, rgb1 = color_pair(seed=20)
    base = {"backend": "neuflow_v2", "checkpoint": checkpoints["neuflow_v2"], "device": "cpu"}
    pair = FramePair(rgb0, rgb1, "rgb")
    (few,) = FlowEngine(EngineConfig(**base, iters_s8=2, fold_batchnorm=False)).compute([pair])
    expected = network_flow(networks["neuflow_v2"], rgb0, rgb1, iters_s16=1, iters_s8=2)
    np.testing.assert_allclose(few.forward, expected, atol=1e-4)
    (folded,) = FlowEngine(EngineConfig(**base, iters_s8=2)).compute([pair])
    np.testing.assert_allclose(folded.forward, expected, atol=1e-3)


def test_neuflow_accepts_strided_views_and_leaves_inputs_alone(engines):
    rgb0, rgb1 = color_pair(seed=21)
    buffers = [np.zeros((HEIGHT, WIDTH + 8, 4), np.uint8) for _ in range(2)]
    for buffer, frame in zip(buffers, (rgb0, rgb1), strict=True):
        buffer[:, :WIDTH, :3] = frame
    snapshots = [buffer.copy() for buffer in buffers]
    views = [buffer[:, :WIDTH, :3] for buffer in buffers]
    engine = engines["neuflow_v1"]
    (strided,) = engine.compute([FramePair(*views, "rgb")], backward=True)
    (packed,) = engine.compute([FramePair(rgb0, rgb1, "rgb")], backward=True)
    np.testing.assert_array_equal(strided.forward, packed.forward)
    for buffer, snapshot in zip(buffers, snapshots, strict=True):
        np.testing.assert_array_equal(buffer, snapshot)


def _drop_and_check_freed(config: EngineConfig) -> None:
    """Build, use and drop an engine with the cyclic GC off: only reference counting frees it."""
    gc.collect()
    gc.disable()
    try:
        engine = FlowEngine(config)
        engine.warm_up(HEIGHT, WIDTH, "rgb", batch=2, backward=True, backward_may_change=True)
        engine.compute([FramePair(*color_pair(seed=50), "rgb", stream="cam")], backward=True)
        backend, model = weakref.ref(engine._backend), weakref.ref(engine._backend._model)
        del engine
        assert backend() is None, "the backend is part of a reference cycle"
        assert model() is None, "the model (its weights: GPU memory) outlives the engine"
    finally:
        gc.enable()


@pytest.mark.parametrize("version", NETWORKS)
def test_dropped_engine_is_freed_by_reference_counting_alone(checkpoints, version):
    _drop_and_check_freed(EngineConfig(backend=version, checkpoint=checkpoints[version],
                                       device="cpu"))


# --- CUDA -----------------------------------------------------------------------------------


@CUDA
@pytest.mark.parametrize("version", NETWORKS)
def test_cuda_dropped_engine_with_graphs_is_freed_by_reference_counting_alone(
    checkpoints, version
):
    def allocated() -> int:
        torch.cuda.synchronize()
        # cuBLAS keeps a workspace per stream; the engine's streams are new ones.
        getattr(torch._C, "_cuda_clearCublasWorkspaces", lambda: None)()
        return torch.cuda.memory_allocated()

    before = allocated()
    _drop_and_check_freed(EngineConfig(backend=version, checkpoint=checkpoints[version],
                                       device="cuda"))
    assert allocated() == before


@pytest.fixture
def no_tf32():
    """Graph-vs-eager comparisons at 1e-3 px: TF32 would let cuDNN's algorithm choice
    (which may differ between batch sizes) decide the outcome."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@CUDA
def test_cuda_fp32_and_fp16_agree_with_cpu(checkpoints, engines):
    pair = FramePair(*color_pair(seed=22), "rgb")
    (cpu,) = engines["neuflow_v2"].compute([pair])
    base = {"backend": "neuflow_v2", "checkpoint": checkpoints["neuflow_v2"], "device": "cuda"}
    fp32 = FlowEngine(EngineConfig(**base, fold_batchnorm=False))
    fp16 = FlowEngine(EngineConfig(**base, precision="fp16"))
    assert (fp32.device, fp16.precision) == ("cuda", "fp16")
    # cuDNN may run fp32 convolutions in TF32, and random weights amplify
    # rounding; trained weights stay far closer.
    assert np.median(np.abs(fp32.compute([pair])[0].forward - cpu.forward)) < 0.05
    assert np.median(np.abs(fp16.compute([pair])[0].forward - cpu.forward)) < 0.5


@CUDA
@pytest.mark.parametrize("version", NETWORKS)
def test_cuda_warm_up_leaves_nothing_to_capture_or_allocate(checkpoints, version):
    """After warm-up, what the worker submits (cameras joining, ready alone or together,
    backward switched) replays graphs and allocates nothing, without any host sync."""
    engine = FlowEngine(
        EngineConfig(backend=version, checkpoint=checkpoints[version], device="cuda")
    )
    engine.warm_up(HEIGHT, WIDTH, "bgr", batch=1, backward=False, backward_may_change=True)
    engine.warm_up(HEIGHT, WIDTH, "bgr", batch=2, backward=False, backward_may_change=True)
    backend = engine._backend  # white-box: graph counters and pinned staging are the point
    captured = (backend._encode.captures, backend._decode_selected.captures)
    assert captured[0] >= 4 and captured[1] >= 4
    reserved = engine.gpu_memory_bytes()
    frames = {seed: color_pair(seed) for seed in (23, 24)}
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(8):
            cameras = [23] if step in (2, 5) else [23, 24]
            pairs = [
                FramePair(*(frames[seed] if step % 2 == 0 else frames[seed][::-1]), "bgr",
                          stream=(seed, step // 6))  # step 6 restarts both streams
                for seed in cameras
            ]
            engine.submit(pairs, backward=step % 3 == 0).result()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert (backend._encode.captures, backend._decode_selected.captures) == captured
    assert engine.gpu_memory_bytes() == reserved
    staging = backend._uploader._buffers
    assert all(entry.host.is_pinned() for entry in staging._entries.values())


@CUDA
def test_cuda_waiting_for_flow_does_not_spin_a_core(checkpoints):
    """Blocking events: the thread waiting in result() sleeps while the GPU works."""
    engine = FlowEngine(EngineConfig(backend="neuflow_v2", checkpoint=checkpoints["neuflow_v2"],
                                     device="cuda", cuda_graphs=False, iters_s8=32))
    pairs = [FramePair(*color_pair(seed, width=1280, height=720), "rgb") for seed in (70, 71)]
    engine.warm_up(720, 1280, "rgb", batch=2, backward=True)
    pending = engine.submit(pairs, backward=True)
    waited, cpu = time.perf_counter(), time.thread_time()
    pending.result()
    waited, cpu = time.perf_counter() - waited, time.thread_time() - cpu
    if waited < 0.05:  # the host copies of the result take some milliseconds of CPU
        pytest.skip(f"the GPU finished within {waited * 1e3:.1f} ms: too little to wait for")
    assert cpu < 0.5 * waited


@CUDA
def test_cuda_engine_leaves_the_callers_stream_alone_and_works_on_its_own(checkpoints):
    engine = FlowEngine(
        EngineConfig(backend="neuflow_v2", checkpoint=checkpoints["neuflow_v2"], device="cuda")
    )
    engine.warm_up(HEIGHT, WIDTH, "rgb")
    default = torch.cuda.default_stream()
    pending = engine.submit([FramePair(*color_pair(seed=60), "rgb")])
    assert torch.cuda.current_stream() == default
    assert engine._backend._compute_stream != default  # white-box: not the legacy stream
    pending.result()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
@pytest.mark.parametrize("version", NETWORKS)
def test_cuda_engine_on_a_second_device_captures_there(checkpoints, version, no_tf32):
    """The worker thread's current device stays 0; graphs must still be recorded on device 1."""
    base = {"backend": version, "checkpoint": checkpoints[version]}
    on_one = FlowEngine(EngineConfig(**base, device="cuda:1"))
    eager = FlowEngine(EngineConfig(**base, device="cuda:1", cuda_graphs=False, streaming=False))
    results: list = []
    thread = threading.Thread(
        target=lambda: results.extend(_camera_run(on_one, [(WIDTH, HEIGHT)], steps=5))
    )
    thread.start()
    thread.join(120)
    expected = _camera_run(eager, [(WIDTH, HEIGHT)], steps=5)
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(got.forward, want.forward, atol=1e-3)
    backend = on_one._backend
    assert backend._encode.captures >= 1 and backend._decode_selected.captures >= 1
    assert backend._encode.capture_failures == backend._decode_selected.capture_failures == 0


def _camera_run(engine: FlowEngine, sizes: list[tuple[int, int]], steps: int) -> list:
    """Forward+backward flow of a translating texture, one stream, per size in turn."""
    results = []
    for seed, (width, height) in enumerate(sizes, start=30):
        start = smooth_texture(height, width, seed, channels=3)
        frames = [translate(start, 1.5 * index, -0.5 * index) for index in range(steps + 1)]
        for previous, current in itertools.pairwise(frames):
            results += engine.compute(
                [FramePair(previous, current, "rgb", stream="cam")], backward=True
            )
    return results


@CUDA
@pytest.mark.parametrize("version", NETWORKS)
def test_cuda_graphs_match_eager_across_a_shape_change(checkpoints, version, no_tf32):
    base = {"backend": version, "checkpoint": checkpoints[version], "device": "cuda"}
    graphed = FlowEngine(EngineConfig(**base, cuda_graphs=True))
    eager = FlowEngine(EngineConfig(**base, cuda_graphs=False, streaming=False))
    sizes = [(WIDTH, HEIGHT), (96, 64), (WIDTH, HEIGHT)]
    for got, expected in zip(
        _camera_run(graphed, sizes, steps=5), _camera_run(eager, sizes, steps=5), strict=True
    ):
        np.testing.assert_allclose(got.forward, expected.forward, atol=1e-3)
        np.testing.assert_allclose(got.backward, expected.backward, atol=1e-3)
    backend = graphed._backend  # white-box: that graphs were really replayed
    for graphed_function in (backend._encode, backend._decode_selected):
        assert graphed_function.captures >= 2 and graphed_function.capture_failures == 0


@CUDA
@pytest.mark.parametrize("version", NETWORKS)
def test_cuda_submissions_in_flight_keep_their_own_results(checkpoints, version, no_tf32):
    """Graph outputs and pinned download buffers are reused from call to call: with
    several submissions queued before any result is read, none may see another's."""
    base = {"backend": version, "checkpoint": checkpoints[version], "device": "cuda"}
    graphed = FlowEngine(EngineConfig(**base, cuda_graphs=True))
    eager = FlowEngine(EngineConfig(**base, cuda_graphs=False, streaming=False))
    graphed.warm_up(HEIGHT, WIDTH, "rgb", backward=True)
    assert graphed.submits_asynchronously
    start = smooth_texture(HEIGHT, WIDTH, 40, channels=3)
    frames = [translate(start, 1.5 * index, -0.5 * index) for index in range(7)]
    pairs = [
        FramePair(previous, current, "rgb", stream="cam")
        for previous, current in itertools.pairwise(frames)
    ]
    pending = [graphed.submit([pair], backward=True) for pair in pairs]
    for pair, waiting in reversed(list(zip(pairs, pending, strict=True))):
        (got,) = waiting.result()
        (expected,) = eager.compute([pair], backward=True)
        np.testing.assert_allclose(got.forward, expected.forward, atol=1e-3)
        np.testing.assert_allclose(got.backward, expected.backward, atol=1e-3)


@CUDA
@pytest.mark.parametrize("version", NETWORKS)
def test_cuda_engines_in_two_threads_capture_and_run_side_by_side(checkpoints, version, no_tf32):
    """Two nodes in one process: one engine's graph capture must not break the other's calls."""
    base = {"backend": version, "checkpoint": checkpoints[version], "device": "cuda"}
    sizes = [(WIDTH, HEIGHT), (96, 64)]
    expected = _camera_run(FlowEngine(EngineConfig(**base, cuda_graphs=False)), sizes, steps=4)
    outcomes: dict[int, object] = {}
    failures: dict[int, int] = {}

    def run(slot: int) -> None:
        try:
            engine = FlowEngine(EngineConfig(**base))
            outcomes[slot] = _camera_run(engine, sizes, steps=4)
            backend = engine._backend
            failures[slot] = (
                backend._encode.capture_failures + backend._decode_selected.capture_failures
            )
        except Exception as error:  # reported below, with the other thread's outcome
            outcomes[slot] = error

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for slot in range(2):
        results = outcomes[slot]
        assert isinstance(results, list), f"engine thread {slot} failed: {results!r}"
        for got, want in zip(results, expected, strict=True):
            np.testing.assert_allclose(got.forward, want.forward, atol=1e-3)
    assert failures == {0: 0, 1: 0}


@CUDA
def test_cuda_fp16_graphs_stay_close_to_fp32(checkpoints):
    base = {"backend": "neuflow_v2", "checkpoint": checkpoints["neuflow_v2"], "device": "cuda"}
    fp16 = FlowEngine(EngineConfig(**base, precision="fp16"))
    fp32 = FlowEngine(EngineConfig(**base, cuda_graphs=False, streaming=False))
    sizes = [(WIDTH, HEIGHT)]
    errors = [
        np.abs(half.forward - full.forward)
        for half, full in zip(
            _camera_run(fp16, sizes, steps=5), _camera_run(fp32, sizes, steps=5), strict=True
        )
    ]
    # Random weights amplify rounding (see above); trained weights stay far closer.
    assert max(float(np.median(error)) for error in errors) < 0.5
