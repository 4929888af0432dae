"""NeuFlow v1/v2 networks: equivalence with the official code and behaviour contracts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from neuflow_weights import FIXTURE_DIR, make_state_dict, read_key_table, write_official_checkpoint

from neuflow_ros.models import NeuFlowV1, NeuFlowV2, fold_batchnorm
from neuflow_ros.models.attention import single_head_attention
from neuflow_ros.models.correlation import (
    CorrelationVolume,
    correlation_matrix,
    local_correlation,
)
from neuflow_ros.models.grids import GridCache
from neuflow_ros.models.refinement import IterativeRefinement

NETWORKS = {"v1": NeuFlowV1, "v2": NeuFlowV2}
SMALL_HEIGHT, SMALL_WIDTH = 96, 128


def build(version: str, seed: int) -> torch.nn.Module:
    model = NETWORKS[version]()
    model.load_state_dict(make_state_dict(version, seed), strict=True)
    return model.eval()


def read_rgb(name: str) -> torch.Tensor:
    bgr = cv2.imread(str(FIXTURE_DIR / name), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float()


def random_images(batch: int, height: int = SMALL_HEIGHT, width: int = SMALL_WIDTH, seed: int = 0):
    """Smooth random images with a known shift between them, so the flow is not degenerate."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, 3, height // 4 + 2, width // 4 + 2, generator=generator) * 255
    base = torch.nn.functional.interpolate(base, scale_factor=4, mode="bilinear")
    return base[..., 2 : 2 + height, 3 : 3 + width].contiguous(), base[..., :height, :width]


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    return {"v2": build("v2", 1), "v1": build("v1", 2)}


@pytest.mark.parametrize(
    ("version", "seed", "prefix", "expected_file", "tolerance"),
    [
        ("v2", 1, "", "flow_v2_seed1.npy", 1e-3),
        ("v1", 2, "", "flow_v1_seed2.npy", 1e-4),
        ("v2", 3, "odd_", "odd_flow_v2_seed3.npy", 1e-3),
        ("v1", 4, "odd_", "odd_flow_v1_seed4.npy", 1e-4),
    ],
)
def test_matches_official_implementation(version, seed, prefix, expected_file, tolerance):
    model = build(version, seed)
    with torch.no_grad():
        flow = model(read_rgb(f"{prefix}frame0.png"), read_rgb(f"{prefix}frame1.png"))
    expected = np.load(FIXTURE_DIR / expected_file)
    actual = flow[0].permute(1, 2, 0).numpy()
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= tolerance


def test_correlation_lookup_matches_bilinear_sampling():
    """Reference: one grid_sample per offset, exactly as the spec words it."""
    batch, height, width, radius = 2, 5, 7, 2
    generator = torch.Generator().manual_seed(3)
    correlation = torch.randn(batch, height * width, height * width, generator=generator)
    flow = (torch.rand(batch, 2, height, width, generator=generator) - 0.5) * 12
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    grid = torch.stack([cols, rows]).float()
    maps = correlation.reshape(batch * height * width, 1, height, width)
    centers = (grid + flow).permute(0, 2, 3, 1).reshape(-1, 1, 1, 2)
    expected = []
    for dx in range(-radius, radius + 1):
        for dy in range(-radius, radius + 1):
            x = centers[..., 0] + dx
            y = centers[..., 1] + dy
            normalized = torch.stack([2 * x / (width - 1) - 1, 2 * y / (height - 1) - 1], dim=-1)
            sampled = torch.nn.functional.grid_sample(maps, normalized, align_corners=True)
            expected.append(sampled.view(batch, height, width))
    actual = CorrelationVolume(correlation, height, width).lookup(flow, grid, radius)
    torch.testing.assert_close(actual, torch.stack(expected, dim=1), atol=1e-5, rtol=1e-5)


def test_local_correlation_matches_direct_sum():
    generator = torch.Generator().manual_seed(4)
    features0 = torch.randn(1, 3, 4, 5, generator=generator)
    features1 = torch.randn(1, 3, 4, 5, generator=generator)
    actual = local_correlation(features0, features1, radius=3)
    f0, f1 = features0[0].numpy(), features1[0].numpy()
    expected = np.zeros((49, 4, 5), dtype=np.float32)
    for k, (dy, dx) in enumerate((dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)):
        for y in range(4):
            for x in range(5):
                if 0 <= y + dy < 4 and 0 <= x + dx < 5:
                    expected[k, y, x] = f0[:, y, x] @ f1[:, y + dy, x + dx]
    np.testing.assert_allclose(actual[0].numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_state_dict_matches_official_keys_and_shapes(version):
    state = NETWORKS[version]().state_dict()
    table = read_key_table(version)
    assert list(state) == [key for key, _, _ in table]
    for key, dims, dtype in table:
        assert tuple(state[key].shape) == dims, key
        assert str(state[key].dtype) == f"torch.{dtype}", key


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_loads_official_format_file_strictly(tmp_path, version):
    path = write_official_checkpoint(tmp_path / "weights.pth", version, 5)
    model = NETWORKS[version]()
    model.load_state_dict(torch.load(path, weights_only=True)["model"], strict=True)
    expected = make_state_dict(version, 5)
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_batch_equals_per_item(models, version):
    model = models[version]
    img0, img1 = random_images(batch=2)
    with torch.no_grad():
        batched = model(img0, img1)
        singles = torch.cat([model(img0[i : i + 1], img1[i : i + 1]) for i in range(2)])
    assert batched.shape == (2, 2, SMALL_HEIGHT, SMALL_WIDTH)
    torch.testing.assert_close(batched, singles, atol=1e-3, rtol=0)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_inputs_are_not_modified(models, version):
    img0, img1 = random_images(batch=1)
    originals = (img0.clone(), img1.clone())
    with torch.no_grad():
        models[version](img0, img1)
        models[version].encode(img0)
    assert torch.equal(img0, originals[0])
    assert torch.equal(img1, originals[1])


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize(
    "shape", [(1, 3, 100, 128), (1, 3, 96, 120), (1, 1, 96, 128), (3, 96, 128), (1, 3, 16, 128)]
)
def test_rejects_unsupported_shapes(models, version, shape):
    images = torch.zeros(shape)
    with pytest.raises(ValueError, match="img0"):
        models[version](images, images)


def test_rejects_mismatched_pair(models):
    img0, _ = random_images(batch=1)
    img1, _ = random_images(batch=1, height=128)
    with pytest.raises(ValueError, match="differ in shape"):
        models["v2"](img0, img1)


def test_rejects_negative_iterations(models):
    img0, img1 = random_images(batch=1)
    with pytest.raises(ValueError, match="iteration"):
        models["v2"](img0, img1, iters_s16=-1)


def test_iteration_counts_change_v2_result(models):
    img0, img1 = random_images(batch=1)
    with torch.no_grad():
        default = models["v2"](img0, img1)
        explicit = models["v2"](img0, img1, iters_s16=1, iters_s8=8)
        fewer = models["v2"](img0, img1, iters_s16=1, iters_s8=2)
    assert torch.equal(default, explicit)
    assert (default - fewer).abs().max() > 1e-2


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_encode_decode_equals_forward(models, version):
    model = models[version]
    img0, img1 = random_images(batch=2)
    with torch.no_grad():
        direct = model(img0, img1)
        streamed = model.decode(model.encode(img0), model.encode(img1))
    torch.testing.assert_close(streamed, direct, atol=1e-4, rtol=0)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_batch_encode_equals_per_item_encodes(models, version):
    model = models[version]
    images, _ = random_images(batch=2)
    with torch.no_grad():
        batched = model.encode(images)
        singles = [model.encode(images[i : i + 1]) for i in range(2)]
    assert len(batched) == 2
    for field in ("features_s16", "features_s8", "upsample_context"):
        joined = torch.cat([getattr(single, field) for single in singles])
        torch.testing.assert_close(getattr(batched, field), joined, atol=1e-4, rtol=0)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_batchnorm_folding_keeps_flow(models, version):
    model = models[version]
    folded = fold_batchnorm(model)
    img0, img1 = random_images(batch=1)
    with torch.no_grad():
        expected = model(img0, img1)
        actual = folded(img0, img1)
    torch.testing.assert_close(actual, expected, atol=1e-3, rtol=0)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_batchnorm_folding_removes_conv_following_norms_in_v2(models):
    folded = fold_batchnorm(models["v2"])
    remaining = [
        name for name, module in folded.named_modules() if isinstance(module, torch.nn.BatchNorm2d)
    ]
    assert remaining == ["cross_attn_s16.norm"]
    assert folded.backbone.block_8_1.conv1.bias is not None
    assert models["v2"].backbone.block_8_1.conv1.bias is None


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_resolution_change_rebuilds_cached_grids(models, version):
    model = models[version]
    small = random_images(batch=1)
    larger = random_images(batch=2, height=128, width=160, seed=1)
    fresh = build(version, {"v2": 1, "v1": 2}[version])
    with torch.no_grad():
        model(*small)
        reused = model(*larger)
        expected = fresh(*larger)
    torch.testing.assert_close(reused, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_half_precision_model_accepts_float_images(models, version):
    """dtype plumbing (grids, constants, buffers) follows the model; the device path is below."""
    half = fold_batchnorm(models[version]).half()
    img0, img1 = random_images(batch=1)
    with torch.no_grad():
        reference = models[version](img0, img1)
        flow = half(img0, img1)
    # v2 accumulates its flow in float32 (see test below); v1 returns the model's dtype.
    assert flow.dtype == {"v1": torch.float16, "v2": torch.float32}[version]
    assert (flow.float() - reference).abs().mean() < 0.05 * reference.abs().mean() + 0.05


def test_half_precision_refinement_keeps_small_updates_of_large_flows():
    """fp16 spaces values near 32 by 1/32: a 0.01 px update would vanish in fp16."""
    refinement = IterativeRefinement(10, 16, 4)
    with torch.no_grad():
        for parameter in refinement.parameters():
            parameter.zero_()
        refinement.conv3.bias[0] = 0.01
    refinement = refinement.half()
    flow = torch.full((1, 2, 4, 4), 32.0)
    inputs = [torch.zeros(1, channels, 4, 4, dtype=torch.float16) for channels in (3, 0, 4)]
    updated, _ = refinement(*inputs, flow, torch.zeros(1, 1, 4, 4, dtype=torch.float16))
    assert updated.dtype == torch.float32
    torch.testing.assert_close(updated[:, 0] - 32.0, torch.full((1, 4, 4), 0.01), atol=1e-4, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_half_precision_on_cuda_is_close_to_float(version):
    model = build(version, {"v2": 1, "v1": 2}[version]).cuda()
    img0, img1 = read_rgb("frame0.png").cuda(), read_rgb("frame1.png").cuda()
    with torch.no_grad():
        reference = model(img0, img1)
        half = fold_batchnorm(model).half()(img0.half(), img1.half())
    assert half.dtype == {"v1": torch.float16, "v2": torch.float32}[version]
    error = (half.float() - reference).abs()
    assert error.mean() < 0.05 * reference.abs().mean() + 0.05


def large_tokens(batch: int, tokens: int, channels: int, seed: int) -> torch.Tensor:
    """Values around 20 in every channel: q.k sums to ~400 per channel, past fp16's
    65504 over 194 channels, while the scaled score (~5600) is well inside it."""
    generator = torch.Generator().manual_seed(seed)
    return 20.0 + torch.rand(batch, tokens, channels, generator=generator)


def test_half_precision_attention_scales_before_the_product():
    """Every key the same: attention is the mean of the values, in any precision,
    as long as the scores stay finite (inf - inf in the softmax is NaN)."""
    query = large_tokens(1, 48, 194, seed=1)
    key = large_tokens(1, 1, 194, seed=2).expand(1, 48, 194)
    value = torch.rand(1, 48, 2, generator=torch.Generator().manual_seed(3))
    assert torch.isinf(torch.matmul(query.half(), key.half().transpose(1, 2))).any()
    half = single_head_attention(query.half(), key.half(), value.half())
    expected = value.mean(dim=1, keepdim=True).expand(1, 48, 2)
    torch.testing.assert_close(half.float(), expected, atol=2e-3, rtol=0)


def test_half_precision_correlation_scales_before_the_product():
    features0 = large_tokens(1, 48, 194, seed=4).transpose(1, 2).reshape(1, 194, 6, 8)
    features1 = large_tokens(1, 48, 194, seed=5).transpose(1, 2).reshape(1, 194, 6, 8)
    half = correlation_matrix(features0.half(), features1.half())
    assert torch.isfinite(half).all()
    expected = correlation_matrix(features0, features1)
    torch.testing.assert_close(half.float(), expected, rtol=2e-3, atol=0)


def test_grid_cache_drops_the_least_recently_used_size():
    cache = GridCache(max_entries=2)
    like = torch.zeros(1)
    first = cache.pixel_grid(4, 4, like)
    cache.pixel_grid(8, 8, like)
    assert cache.pixel_grid(4, 4, like) is first  # now the most recently used
    cache.pixel_grid(16, 16, like)  # evicts 8x8, not 4x4
    assert cache.pixel_grid(4, 4, like) is first
    assert len(cache.tensors()) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_grids_built_during_a_capture_are_not_kept():
    """Their memory holds values only once the graph replays (never, if the capture fails)."""
    cache = GridCache()
    like = torch.zeros(1, device="cuda")
    cache.pixel_grid(8, 8, like)
    graph, stream = torch.cuda.CUDAGraph(), torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        graph.capture_begin()
        cache.pixel_grid(4, 4, like)
        cache.pixel_grid(8, 8, like)
        graph.capture_end()
    torch.cuda.current_stream().wait_stream(stream)
    assert [tuple(grid.shape) for grid in cache.tensors()] == [(2, 8, 8)]
