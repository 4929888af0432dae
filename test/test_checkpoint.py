"""Checkpoint resolution, download cache, validation messages and model loading."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest
import torch
from neuflow_weights import make_state_dict, write_official_checkpoint

from neuflow_ros.flow.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    resolve_checkpoint,
)
from neuflow_ros.models import NeuFlowV1, NeuFlowV2


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def v2_file(tmp_path_factory):
    return write_official_checkpoint(tmp_path_factory.mktemp("ckpt") / "v2.pth", "v2", 11)


@pytest.fixture(scope="module")
def v1_file(tmp_path_factory):
    return write_official_checkpoint(tmp_path_factory.mktemp("ckpt") / "v1.pth", "v1", 12)


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory and counts GET requests, to prove the cache is reused."""

    requests: list[str]

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(CountingHandler, directory=str(root))
    CountingHandler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", CountingHandler.requests
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_official_v2_file_is_detected_and_loaded(v2_file):
    version, state = load_checkpoint(v2_file)
    assert version == "neuflow_v2"
    expected = make_state_dict("v2", 11)
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[key], expected[key]) for key in expected)


def test_load_model_builds_matching_network_in_eval_mode(v1_file, v2_file):
    version, model = load_model(str(v1_file))
    assert version == "neuflow_v1"
    assert isinstance(model, NeuFlowV1)
    assert not model.training
    assert next(model.parameters()).device.type == "cpu"
    expected = make_state_dict("v1", 12)
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())
    version, model = load_model(str(v2_file), expected_version="neuflow_v2")
    assert (version, type(model)) == ("neuflow_v2", NeuFlowV2)


def test_bare_state_dict_is_accepted(tmp_path):
    path = tmp_path / "bare.pth"
    torch.save(make_state_dict("v1", 3), path)
    version, state = load_checkpoint(path)
    assert version == "neuflow_v1"
    key = "conv_s8.conv1.weight"
    assert torch.equal(state[key], make_state_dict("v1", 3)[key])


def test_expected_version_mismatch(v1_file):
    with pytest.raises(CheckpointError, match=r"NeuFlow v1.*neuflow_v2 was requested"):
        load_model(str(v1_file), expected_version="neuflow_v2")


def test_unknown_expected_version_is_rejected(v1_file):
    with pytest.raises(CheckpointError, match="unknown expected_version"):
        load_model(str(v1_file), expected_version="neuflow_v3")


def test_missing_file(tmp_path):
    missing = tmp_path / "nothing.pth"
    with pytest.raises(CheckpointError, match=r"not found.*nothing\.pth"):
        load_model(str(missing))
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(missing)


def test_directory_is_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_model(str(tmp_path))


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"\x00this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=r"garbage\.pth.*not a readable PyTorch file"):
        load_checkpoint(path)


def test_truncated_file(tmp_path, v2_file):
    path = tmp_path / "truncated.pth"
    path.write_bytes(v2_file.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"truncated\.pth"):
        load_checkpoint(path)


def test_not_a_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="holds a list, expected a dict"):
        load_checkpoint(path)


def test_non_tensor_values(tmp_path):
    path = tmp_path / "mixed.pth"
    state = make_state_dict("v2", 1)
    state["backbone.block_8_1.conv1.weight"] = 3
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match=r"1 entries are not tensors: backbone\.block_8_1"):
        load_checkpoint(path)


def test_wrong_keys_are_named(tmp_path):
    state = make_state_dict("v2", 1)
    for key in ("refine_s8.conv3.bias", "merge_s8.0.weight", "conv_s8.conv2.weight"):
        del state[key]
    state["extra.layer.weight"] = torch.zeros(3)
    path = tmp_path / "wrong_keys.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "wrong_keys.pth" in message
    assert "official format, looks like NeuFlow v2" in message
    assert "3 missing keys" in message
    for key in ("refine_s8.conv3.bias", "merge_s8.0.weight", "conv_s8.conv2.weight"):
        assert key in message
    assert "1 unexpected keys: extra.layer.weight" in message


def test_wrong_shape_is_named(tmp_path):
    state = make_state_dict("v1", 1)
    state["flow_attn_s16.q_proj.weight"] = torch.zeros(92, 90)
    path = tmp_path / "wrong_shape.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as caught:
        load_model(str(path))
    message = str(caught.value)
    assert "bare state dict, looks like NeuFlow v1" in message
    assert "flow_attn_s16.q_proj.weight expected [92, 92] got [92, 90]" in message


def test_unrelated_state_dict(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match=r"no NeuFlow v1 or v2 keys.*fc\.weight"):
        load_checkpoint(path)


def test_local_path_expands_home(tmp_path, monkeypatch, v2_file):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "w.pth").write_bytes(v2_file.read_bytes())
    assert resolve_checkpoint("~/w.pth") == tmp_path / "w.pth"


def test_local_sha256_checked(v2_file):
    assert resolve_checkpoint(str(v2_file), sha256=sha256_of(v2_file).upper()) == v2_file
    with pytest.raises(CheckpointError, match=r"expected 0{64}"):
        resolve_checkpoint(str(v2_file), sha256="0" * 64)
    with pytest.raises(CheckpointError, match="64 hexadecimal"):
        resolve_checkpoint(str(v2_file), sha256="abc")


def test_unsupported_url_scheme():
    with pytest.raises(CheckpointError, match="only http and https"):
        resolve_checkpoint("ftp://example.org/neuflow_mixed.pth")


def test_url_is_downloaded_once_and_cached(server, tmp_path, v2_file):
    root, base_url, requests = server
    (root / "neuflow_mixed.pth").write_bytes(v2_file.read_bytes())
    cache = tmp_path / "cache"
    url = f"{base_url}/neuflow_mixed.pth"
    first = resolve_checkpoint(url, cache_dir=str(cache), sha256=sha256_of(v2_file))
    second = resolve_checkpoint(url, cache_dir=str(cache))
    assert first == second
    assert first.parent == cache
    assert first.name.endswith("neuflow_mixed.pth")
    assert first.read_bytes() == v2_file.read_bytes()
    assert requests == ["/neuflow_mixed.pth"]
    assert [p.name for p in cache.iterdir()] == [first.name]
    version, model = load_model(url, cache_dir=str(cache))
    assert (version, type(model)) == ("neuflow_v2", NeuFlowV2)
    assert len(requests) == 1


def test_cache_dir_from_environment(server, tmp_path, monkeypatch, v1_file):
    root, base_url, _ = server
    (root / "v1.pth").write_bytes(v1_file.read_bytes())
    monkeypatch.setenv("NEUFLOW_CACHE_DIR", str(tmp_path / "env_cache"))
    path = resolve_checkpoint(f"{base_url}/v1.pth")
    assert path.parent == tmp_path / "env_cache"


def test_download_sha256_mismatch_is_not_cached(server, tmp_path, v2_file):
    root, base_url, _ = server
    (root / "w.pth").write_bytes(v2_file.read_bytes())
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint(f"{base_url}/w.pth", cache_dir=str(cache), sha256="f" * 64)
    message = str(caught.value)
    assert sha256_of(v2_file) in message
    assert "f" * 64 in message
    assert "w.pth" in message
    assert list(cache.iterdir()) == []


def test_download_http_error(server, tmp_path):
    _, base_url, _ = server
    with pytest.raises(CheckpointError, match=r"downloading checkpoint .*missing\.pth failed"):
        resolve_checkpoint(f"{base_url}/missing.pth", cache_dir=str(tmp_path / "cache"))
    assert list((tmp_path / "cache").iterdir()) == []
