"""The per-camera memory that lets a stream encode each frame once.

In a camera stream the frame that ends one pair starts the next. NeuFlow's
backbone depends on each image alone, so its output for the newest frame of
a stream can be kept and reused as the first frame of the stream's next
pair, halving the backbone work. Reuse is allowed only for the very frame
object that was encoded, with the same size, colour order, network grid and
precision; anything else (a reset, a new resolution, another frame) misses
and is encoded afresh, which is what keeps streaming results identical to
encoding both frames every time.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from neuflow_ros.flow.bounded_cache import BoundedCache
from neuflow_ros.models import EncodedImages

MAX_STREAMS = 32
"""More cameras than any robot carries; the bound only stops a caller that
invents a new stream name per frame from growing memory."""


@dataclass(frozen=True)
class _RememberedFrame:
    frame: np.ndarray
    """Held so that the identity check below can never match a recycled id()."""
    signature: Hashable
    encoded: EncodedImages


class StreamEncodings:
    """Per stream, the encoding of the newest frame (a batch of one)."""

    def __init__(self, max_streams: int = MAX_STREAMS) -> None:
        self._frames: BoundedCache[_RememberedFrame] = BoundedCache(max_streams)

    def lookup(
        self, stream: Hashable | None, frame: np.ndarray, signature: Hashable
    ) -> EncodedImages | None:
        """The kept encoding when ``frame`` is the stream's remembered frame, else None."""
        if stream is None:
            return None
        remembered = self._frames.get(stream)
        if remembered is None or remembered.frame is not frame:
            return None
        if remembered.signature != signature:
            return None
        return remembered.encoded

    def remember(
        self,
        stream: Hashable | None,
        frame: np.ndarray,
        signature: Hashable,
        encoded: EncodedImages,
    ) -> None:
        """Keep ``encoded`` (a batch of one, not shared with any other tensor) for ``frame``."""
        if stream is not None:
            self._frames.put(stream, _RememberedFrame(frame, signature, encoded))

    def clear(self) -> None:
        self._frames.clear()

    def __len__(self) -> int:
        return len(self._frames)
