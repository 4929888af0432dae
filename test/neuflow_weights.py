"""Deterministic random NeuFlow weights for tests (no trained weights exist offline).

Re-implements the generator of the project's reference script
`/work/shared/neuflow_spec/make_weights.py` byte for byte, reading the key
lists copied to `test/fixtures/neuflow/<version>_state_dict_keys.tsv`, so the
tests run without /work/shared. The fixture flows in that folder were computed
by the official NeuFlow code with exactly these weights, which is what makes
them an independent check of our networks.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch

FIXTURE_DIR = pathlib.Path(__file__).parent / "fixtures" / "neuflow"


def read_key_table(version: str) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, dtype) rows of the official state dict, in file order; version 'v1' or 'v2'."""
    rows = []
    lines = (FIXTURE_DIR / f"{version}_state_dict_keys.tsv").read_text().splitlines()
    for line in lines[1:]:
        key, shape, dtype = line.split("\t")
        dims = tuple(int(size) for size in shape.split(",")) if shape else ()
        rows.append((key, dims, dtype))
    return rows


def make_state_dict(version: str, seed: int) -> dict[str, torch.Tensor]:
    """The state dict `make_weights.py <version> <seed>` writes, drawn key by key with PCG64."""
    rng = np.random.Generator(np.random.PCG64(seed))
    state = {}
    for key, dims, dtype in read_key_table(version):
        if dtype == "int64":
            state[key] = torch.zeros(dims, dtype=torch.int64)
            continue
        if len(dims) >= 2:
            receptive = int(np.prod(dims[2:])) if len(dims) > 2 else 1
            bound = np.sqrt(6.0 / (dims[1] * receptive + dims[0] * receptive))
            values = rng.uniform(-bound, bound, size=dims)
        elif key.endswith("running_mean"):
            values = rng.uniform(-0.1, 0.1, size=dims)
        elif key.endswith("running_var"):
            values = rng.uniform(0.8, 1.2, size=dims)
        elif key.endswith(".weight"):
            values = 1.0 + rng.uniform(-0.1, 0.1, size=dims)
        else:
            values = rng.uniform(-0.05, 0.05, size=dims)
        state[key] = torch.from_numpy(values.astype(np.float32))
    return state


def write_official_checkpoint(path: pathlib.Path, version: str, seed: int) -> pathlib.Path:
    """Save {'model': state_dict} like the official NeuFlow releases."""
    torch.save({"model": make_state_dict(version, seed)}, path)
    return path
