"""Dense flow to and from the two file formats evaluation tools read.

``.flo`` (Middlebury / Sintel) keeps float32 vectors exactly; KITTI's 16-bit
PNG is what the KITTI devkit and most benchmark scripts load. Offline users
compare the package's flow against other methods with those tools, so the
files must follow the published layouts to the byte.

* ``.flo``: the float32 202021.25 (bytes ``PIEH``), int32 width, int32
  height, then float32 (u, v) interleaved row by row; all little-endian.
* KITTI: a 3-channel 16-bit PNG with R = u * 64 + 2**15, G = v * 64 + 2**15,
  B = 1 where the vector is valid, 0 elsewhere. The encoding covers about
  +-512 px at 1/64 px resolution; larger vectors are clipped to that range.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

FLO_MAGIC = 202021.25
_FLO_HEADER = np.dtype([("magic", "<f4"), ("width", "<i4"), ("height", "<i4")])
# Sizes above this in a header mean a corrupt or foreign file, not a real flow field.
_MAX_FLO_SIDE = 1 << 16

KITTI_SCALE = 64.0
KITTI_OFFSET = 2.0**15


class FlowFileError(ValueError):
    """A flow file that does not follow its format; the message says what is wrong."""


def _check_flow(flow: np.ndarray) -> np.ndarray:
    if not isinstance(flow, np.ndarray) or flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be an HxWx2 array, got shape {np.shape(flow)}")
    if flow.shape[0] == 0 or flow.shape[1] == 0:
        raise ValueError(f"flow must not be empty, got shape {flow.shape}")
    if not np.issubdtype(flow.dtype, np.floating):
        raise ValueError(f"flow must be floating point, got {flow.dtype}")
    return flow


def encode_flo(flow: np.ndarray) -> bytes:
    """The bytes of a ``.flo`` file holding ``flow`` (HxWx2, u then v)."""
    flow = _check_flow(flow)
    height, width = flow.shape[:2]
    header = np.array([(FLO_MAGIC, width, height)], dtype=_FLO_HEADER)
    return header.tobytes() + np.ascontiguousarray(flow, dtype="<f4").tobytes()


def decode_flo(data: bytes) -> np.ndarray:
    """HxWx2 float32 flow from the bytes of a ``.flo`` file."""
    if len(data) < _FLO_HEADER.itemsize:
        raise FlowFileError(f".flo data is {len(data)} bytes, shorter than its 12-byte header")
    header = np.frombuffer(data, dtype=_FLO_HEADER, count=1)[0]
    if header["magic"] != np.float32(FLO_MAGIC):
        raise FlowFileError(
            f"not a .flo file: magic is {data[:4]!r}, expected b'PIEH' (float {FLO_MAGIC})"
        )
    width, height = int(header["width"]), int(header["height"])
    if not (0 < width <= _MAX_FLO_SIDE and 0 < height <= _MAX_FLO_SIDE):
        raise FlowFileError(f".flo header has an invalid size {width}x{height}")
    expected = _FLO_HEADER.itemsize + width * height * 8
    if len(data) != expected:
        raise FlowFileError(
            f".flo file of {width}x{height} must be {expected} bytes, got {len(data)}"
        )
    values = np.frombuffer(data, dtype="<f4", offset=_FLO_HEADER.itemsize)
    return values.reshape(height, width, 2).astype(np.float32)


def write_flo(path: str | Path, flow: np.ndarray) -> None:
    Path(path).write_bytes(encode_flo(flow))


def read_flo(path: str | Path) -> np.ndarray:
    return decode_flo(Path(path).read_bytes())


def write_kitti_flow(path: str | Path, flow: np.ndarray, valid: np.ndarray | None = None) -> None:
    """Write a KITTI 16-bit flow PNG; ``valid`` defaults to "both components finite".

    Invalid pixels store zero flow with B = 0, so readers that ignore the
    valid channel see no motion rather than garbage.
    """
    flow = _check_flow(flow)
    finite = np.isfinite(flow).all(axis=2)
    valid = finite if valid is None else np.asarray(valid, dtype=bool) & finite
    if valid.shape != flow.shape[:2]:
        raise ValueError(f"valid must have shape {flow.shape[:2]}, got {valid.shape}")
    scaled = np.where(valid[..., None], flow.astype(np.float64) * KITTI_SCALE + KITTI_OFFSET,
                      KITTI_OFFSET)
    encoded = np.clip(np.rint(scaled), 0, 65535).astype(np.uint16)
    # OpenCV writes channels in BGR order: B = valid, G = v, R = u.
    bgr = np.dstack([valid.astype(np.uint16), encoded[..., 1], encoded[..., 0]])
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"KITTI flow files must end in .png, got {path.name!r}")
    if not cv2.imwrite(str(path), bgr):
        raise OSError(f"could not write KITTI flow PNG {path}")


def read_kitti_flow(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(HxWx2 float32 flow, HxW bool valid) from a KITTI 16-bit flow PNG."""
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise FlowFileError(f"could not read {path} as an image")
    if bgr.dtype != np.uint16 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise FlowFileError(
            f"{path} is not a KITTI flow PNG: need 3 channels of uint16, got "
            f"shape {bgr.shape} dtype {bgr.dtype}"
        )
    flow = (bgr[..., [2, 1]].astype(np.float32) - np.float32(KITTI_OFFSET)) / np.float32(
        KITTI_SCALE
    )
    return flow, bgr[..., 0] > 0
