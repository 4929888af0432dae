"""Find, download, validate and load NeuFlow checkpoints.

Where to get official weights (they are not bundled with this package):

- NeuFlow v2: the NeuFlow_v2 GitHub repository
  (https://github.com/neufieldrobotics/NeuFlow_v2) publishes `neuflow_mixed.pth`
  (trained on a mix of datasets; the best default for real cameras), as well
  as `neuflow_sintel.pth` and `neuflow_things.pth`.
- NeuFlow v1: the original repository (https://github.com/neufieldrobotics/NeuFlow)
  publishes its Sintel and FlyingThings checkpoints.

All of them are dictionaries whose `model` entry holds the state dict; a bare
state dict is accepted too. Every problem surfaces as one `CheckpointError`
whose message says which file, what it looked like and which keys are wrong,
because a robot that silently ran with random weights would publish garbage
flow that looks plausible. There is deliberately no fallback.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import BinaryIO

import torch
from torch import Tensor, nn

from ..models import NeuFlowV1, NeuFlowV2

CACHE_DIR_ENV = "NEUFLOW_CACHE_DIR"
DEFAULT_CACHE_DIR = "~/.cache/neuflow_ros"
DOWNLOAD_TIMEOUT_S = 60.0
KEYS_SHOWN = 5
NETWORKS: dict[str, type[nn.Module]] = {"neuflow_v1": NeuFlowV1, "neuflow_v2": NeuFlowV2}
_VERSION_NAMES = {"neuflow_v1": "NeuFlow v1", "neuflow_v2": "NeuFlow v2"}
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_CHUNK_BYTES = 1 << 20


class CheckpointError(RuntimeError):
    """A checkpoint could not be found, fetched, read or matched to a NeuFlow network."""


def resolve_checkpoint(
    source: str, cache_dir: str | None = None, sha256: str | None = None
) -> pathlib.Path:
    """Local file for `source`: a path (with ~) or an http(s) URL downloaded once into the cache.

    The cache defaults to $NEUFLOW_CACHE_DIR, else ~/.cache/neuflow_ros.
    With `sha256`, the file's digest must match (checked before a download is
    put into the cache, and again on every later use).
    """
    expected = _normalize_digest(sha256)
    if urllib.parse.urlsplit(source).scheme.lower() in ("http", "https"):
        path = _cached_download(source, _cache_directory(cache_dir), expected)
    elif "://" in source:
        raise CheckpointError(f"unsupported checkpoint URL (only http and https): {source}")
    else:
        path = pathlib.Path(source).expanduser()
        _require_file(path)
    if expected is not None:
        _verify_digest(path, expected)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[str, dict[str, Tensor]]:
    """Read a checkpoint on the CPU, detect its NeuFlow version and check every key and shape.

    Returns ('neuflow_v1' | 'neuflow_v2', state_dict) ready for a strict
    `load_state_dict`.
    """
    path = pathlib.Path(path).expanduser()
    _require_file(path)
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {path} is not a readable PyTorch file (corrupt, truncated, or "
            f"containing objects other than tensors): {error}"
        ) from error
    layout, state_dict = _unwrap(path, content)
    version = _detect_version(state_dict)
    if version is None:
        raise CheckpointError(
            f"checkpoint {path} ({layout}) holds no NeuFlow v1 or v2 keys; "
            f"first keys: {_preview(state_dict)}"
        )
    problems = _compare_with_network(state_dict, _expected_shapes(version))
    if problems:
        raise CheckpointError(
            f"checkpoint {path} ({layout}, looks like {_VERSION_NAMES[version]}): "
            + "; ".join(problems)
        )
    return version, state_dict


def load_model(
    source: str,
    cache_dir: str | None = None,
    sha256: str | None = None,
    expected_version: str | None = None,
) -> tuple[str, nn.Module]:
    """Resolve, validate and load a checkpoint into the matching network (CPU, eval mode)."""
    if expected_version is not None and expected_version not in NETWORKS:
        raise CheckpointError(
            f"unknown expected_version {expected_version!r}; use one of {sorted(NETWORKS)}"
        )
    path = resolve_checkpoint(source, cache_dir=cache_dir, sha256=sha256)
    version, state_dict = load_checkpoint(path)
    if expected_version is not None and version != expected_version:
        raise CheckpointError(
            f"checkpoint {path} is {_VERSION_NAMES[version]} ({version}), "
            f"but {expected_version} was requested"
        )
    model = NETWORKS[version]()
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} could not be loaded: {error}") from error
    return version, model.eval()


def _normalize_digest(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    digest = sha256.strip().lower()
    if not _HEX_DIGEST.fullmatch(digest):
        raise CheckpointError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    return digest


def _cache_directory(cache_dir: str | None) -> pathlib.Path:
    chosen = cache_dir or os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR
    return pathlib.Path(chosen).expanduser()


def _cache_file_name(url: str) -> str:
    """URL's file name, prefixed by a hash of the full URL so equal names from two hosts differ."""
    base = pathlib.PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base) or "checkpoint.pth"
    return f"{hashlib.sha256(url.encode()).hexdigest()[:16]}_{base}"


def _cached_download(url: str, cache_dir: pathlib.Path, expected: str | None) -> pathlib.Path:
    target = cache_dir / _cache_file_name(url)
    if target.is_file():
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(f"cannot create checkpoint cache {cache_dir}: {error}") from error
    handle, temp_name = tempfile.mkstemp(dir=cache_dir, prefix=".download-", suffix=".part")
    temp_path = pathlib.Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            digest = _download(url, out)
        if expected is not None and digest != expected:
            raise CheckpointError(
                f"checkpoint downloaded from {url} for {target} has sha256 {digest}, "
                f"expected {expected}; it was not cached"
            )
        os.replace(temp_path, target)
    finally:
        temp_path.unlink(missing_ok=True)
    return target


def _download(url: str, out: BinaryIO) -> str:
    """Stream `url` into the open file `out`; returns the sha256 hex digest of the bytes."""
    hasher = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            while chunk := response.read(_CHUNK_BYTES):
                hasher.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise CheckpointError(f"downloading checkpoint {url} failed: {error}") from error
    return hasher.hexdigest()


def _require_file(path: pathlib.Path) -> None:
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a regular file: {path}")


def _verify_digest(path: pathlib.Path, expected: str) -> None:
    hasher = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            hasher.update(chunk)
    actual = hasher.hexdigest()
    if actual != expected:
        raise CheckpointError(
            f"checkpoint {path} has sha256 {actual}, expected {expected} "
            "(delete the file if it is a stale or damaged download)"
        )


def _unwrap(path: pathlib.Path, content: object) -> tuple[str, dict[str, Tensor]]:
    """(layout description, state dict) for the official {'model': ...} or a bare state dict."""
    if not isinstance(content, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(content).__name__}, expected a dict "
            "(official format {'model': state_dict} or a bare state dict)"
        )
    if isinstance(content.get("model"), dict):
        layout, state_dict = "official format", content["model"]
    else:
        layout, state_dict = "bare state dict", content
    not_tensors = [key for key, value in state_dict.items() if not isinstance(value, Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"checkpoint {path} ({layout}): {len(not_tensors)} entries are not tensors: "
            f"{_preview(not_tensors)}"
        )
    return layout, state_dict


def _detect_version(state_dict: dict[str, Tensor]) -> str | None:
    """Version whose key set overlaps the checkpoint most; None if no key is known."""
    keys = set(state_dict)
    overlaps = {version: len(keys & _expected_shapes(version).keys()) for version in NETWORKS}
    best = max(overlaps, key=overlaps.__getitem__)
    return best if overlaps[best] else None


@functools.cache
def _expected_shapes(version: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the network's state dict, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        network = NETWORKS[version]()
    return {key: tuple(value.shape) for key, value in network.state_dict().items()}


def _compare_with_network(
    state_dict: dict[str, Tensor], expected: dict[str, tuple[int, ...]]
) -> list[str]:
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [
        f"{key} expected {list(shape)} got {list(state_dict[key].shape)}"
        for key, shape in expected.items()
        if key in state_dict and tuple(state_dict[key].shape) != shape
    ]
    problems = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", mismatched),
    ):
        if items:
            problems.append(f"{len(items)} {label}: {_preview(items)}")
    return problems


def _preview(items: Iterable[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:KEYS_SHOWN])
    return shown + (f", ... ({len(items) - KEYS_SHOWN} more)" if len(items) > KEYS_SHOWN else "")
