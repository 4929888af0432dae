"""A small least-recently-used map for per-shape resources.

The engine keeps buffers and solver objects per input shape so a steady
camera stream reuses them frame after frame; the bound keeps a caller that
feeds ever-changing sizes from growing memory without limit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

ValueT = TypeVar("ValueT")


class BoundedCache(Generic[ValueT]):
    """Maps keys to lazily created values, evicting the least recently used."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self._max_entries = max_entries
        self._entries: OrderedDict[Hashable, ValueT] = OrderedDict()

    def get_or_create(self, key: Hashable, create: Callable[[], ValueT]) -> ValueT:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = create()
        self.put(key, value)
        return value

    def get(self, key: Hashable) -> ValueT | None:
        """The value for ``key`` (now the most recently used), or None."""
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key]

    def put(self, key: Hashable, value: ValueT) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
