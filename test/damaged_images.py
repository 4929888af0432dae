"""Compressed images that broken links and hostile senders produce, built by hand.

Shared by the decoder tests and the node's fault-injection tests, so both
inject exactly the same damage.
"""

from __future__ import annotations

import struct
import zlib


def damage_scan(jpeg: bytes) -> bytes:
    """Overwrite 16 bytes in the middle of the entropy-coded scan (after the SOS marker).

    On a 320x240 or larger scene libjpeg reports it only as a warning, and
    OpenCV returns a visibly wrong picture.
    """
    start_of_scan = jpeg.find(b"\xff\xda")
    middle = (start_of_scan + len(jpeg)) // 2
    damaged = bytearray(jpeg)
    damaged[middle : middle + 16] = bytes(range(0x10, 0x20))
    return bytes(damaged)


def png_bomb(width: int, height: int) -> bytes:
    """A valid 8-bit gray PNG of width x height zeros: tiny on the wire, huge once decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the row's zeros
    rows = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks
