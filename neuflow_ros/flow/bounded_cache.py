"""A small least-recently-used map for per-shape resources.

The engine keeps buffers and solver objects per input shape so a steady
camera stream reuses them frame after frame; the bound keeps a caller that
feeds ever-changing sizes from growing memory without limit. A count alone
does not bound memory when one entry for a huge frame weighs as much as a
hundred small ones, so entries may also carry a weight (pixels, bytes) with a
budget for their sum.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

ValueT = TypeVar("ValueT")


class BoundedCache(Generic[ValueT]):
    """Maps keys to lazily created values, evicting the least recently used.

    At most ``max_entries`` values are kept and, with ``max_weight``, values
    whose weights sum to at most that; the most recently used value is always
    kept, however heavy, because its caller is using it.
    """

    def __init__(self, max_entries: int, max_weight: int | None = None) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        if max_weight is not None and max_weight < 0:
            raise ValueError(f"max_weight must not be negative, got {max_weight}")
        self._max_entries = max_entries
        self._max_weight = max_weight
        self._entries: OrderedDict[Hashable, tuple[ValueT, int]] = OrderedDict()
        self._weight = 0

    def get_or_create(
        self, key: Hashable, create: Callable[[], ValueT], weight: int = 0
    ) -> ValueT:
        """``weight`` counts against ``max_weight`` when the value is created here."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key][0]
        value = create()
        self.put(key, value, weight)
        return value

    def get(self, key: Hashable) -> ValueT | None:
        """The value for ``key`` (now the most recently used), or None."""
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key][0]

    def put(self, key: Hashable, value: ValueT, weight: int = 0) -> None:
        if key in self._entries:
            self._weight -= self._entries[key][1]
        self._entries[key] = (value, weight)
        self._entries.move_to_end(key)
        self._weight += weight
        while len(self._entries) > 1 and (
            len(self._entries) > self._max_entries
            or (self._max_weight is not None and self._weight > self._max_weight)
        ):
            _, (_, evicted_weight) = self._entries.popitem(last=False)
            self._weight -= evicted_weight

    @property
    def weight(self) -> int:
        """Sum of the weights of the values kept."""
        return self._weight

    def clear(self) -> None:
        self._entries.clear()
        self._weight = 0

    def __len__(self) -> int:
        return len(self._entries)
