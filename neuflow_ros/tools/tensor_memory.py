"""Peak memory of a computation, counted tensor by tensor as PyTorch creates them.

What a network pass needs on a GPU can be counted without one: every tensor
an ATen operation creates is seen here with its storage size, and on PyTorch's
``meta`` device tensors have shapes but no data, so a 1280x720 pass counts in
a fraction of a second on any machine. The count is the tensors' own bytes;
what is not a tensor is left out (the CUDA caching allocator's rounding to
blocks, cuDNN and cuBLAS workspaces, the CUDA context), so on a GPU it is a
floor that ``torch.cuda.max_memory_allocated`` can be held against.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode


class LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of the tensor storages created while active and still alive.

    A storage counts once, however many views share it, from the operation
    that creates it until the last tensor on it is freed. Storages that exist
    before (weights, inputs) never count, nor do views of them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live_bytes = 0
        self.peak_bytes = 0
        self._storages: dict[int, list[int]] = {}
        """Storage id -> [bytes, tensors on it still alive]."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None) -> Any:
        kwargs = kwargs or {}
        existing = {_storage_id(value) for value in tensors_in((args, kwargs))}
        result = func(*args, **kwargs)
        for tensor in tensors_in(result):
            key = _storage_id(tensor)
            entry = self._storages.get(key)
            if entry is None:
                if key in existing:
                    continue
                entry = self._storages[key] = [tensor.untyped_storage().nbytes(), 0]
                self.live_bytes += entry[0]
                self.peak_bytes = max(self.peak_bytes, self.live_bytes)
            entry[1] += 1
            weakref.finalize(tensor, self._release, key)
        return result

    def _release(self, key: int) -> None:
        entry = self._storages[key]
        entry[1] -= 1
        if entry[1] == 0:
            del self._storages[key]
            self.live_bytes -= entry[0]


def tensors_in(tree: Any) -> list[torch.Tensor]:
    """The tensors among an operation's arguments or results, however nested."""
    return [value for value in pytree.tree_leaves(tree) if isinstance(value, torch.Tensor)]


def _storage_id(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage()._cdata
