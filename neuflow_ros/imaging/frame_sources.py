"""Recorded camera frames from folders of images and video files, in time order.

Offline tuning starts from whatever a flight left behind: a folder of
images named by timestamp, a folder of numbered frames, or a video. Each
source yields frames with a stamp in nanoseconds and a decoder that runs
only when the frame is used, so a corrupt file becomes one counted error
instead of ending the run. Bags are read by bag_io, which also copies the
other topics.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2

from neuflow_ros.imaging.compressed_image import decode_compressed_image
from neuflow_ros.imaging.image_conversion import CameraImage

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp"}
)
_NANOSECOND_NAME = re.compile(r"\d+")


class FrameSourceError(ValueError):
    """A folder or video that cannot serve as a frame source; the message says why."""


@dataclass(frozen=True)
class SourceFrame:
    """One recorded frame: when it was taken, what to call it, and how to get its pixels.

    ``encoding`` is compared between consecutive frames (a change restarts
    the flow history); ``decode`` raises ImageFormatError for unusable data.
    """

    stamp_ns: int
    name: str
    encoding: str
    decode: Callable[[], CameraImage]


def _stamp_for_index(index: int, fps: float) -> int:
    return round(index * 1e9 / fps)


def _check_fps(fps: float | None) -> None:
    if fps is not None and not (fps > 0 and fps < float("inf")):
        raise FrameSourceError(f"fps must be a positive number, got {fps}")


class ImageFolderSource:
    """The images of one folder (not recursive), in name order.

    If every file name (without suffix) is an integer, it is taken as the
    stamp in nanoseconds and the files are ordered by it; otherwise frames
    are ordered by name and stamped from their index and ``fps``.
    """

    def __init__(self, folder: str | Path, fps: float | None = None) -> None:
        _check_fps(fps)
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FrameSourceError(f"{self.folder} is not a folder")
        files = [p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in
                 IMAGE_SUFFIXES]
        if not files:
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise FrameSourceError(f"no images ({suffixes}) in {self.folder}")
        if all(_NANOSECOND_NAME.fullmatch(p.stem) for p in files):
            files.sort(key=lambda p: (int(p.stem), p.name))
            self._stamps = [int(p.stem) for p in files]
        elif fps is None:
            raise FrameSourceError(
                f"image names in {self.folder} are not integer nanosecond stamps "
                f"(e.g. {sorted(files)[0].name!r}): pass --fps to stamp frames by index"
            )
        else:
            files.sort(key=lambda p: p.name)
            self._stamps = [_stamp_for_index(index, fps) for index in range(len(files))]
        self._files = files

    @property
    def frame_count(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[SourceFrame]:
        for path, stamp_ns in zip(self._files, self._stamps, strict=True):
            yield SourceFrame(stamp_ns, path.stem, path.suffix.lower().lstrip("."),
                              _file_decoder(path))


def _file_decoder(path: Path) -> Callable[[], CameraImage]:
    def decode() -> CameraImage:
        return decode_compressed_image(path.suffix.lstrip("."), path.read_bytes())

    return decode


class VideoSource:
    """The frames of a video file, stamped from their index and the frame rate.

    The frame rate is ``fps`` when given, else the one the container
    declares. The frame count is the container's estimate.
    """

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        _check_fps(fps)
        self.path = Path(path)
        if not self.path.is_file():
            raise FrameSourceError(f"{self.path} does not exist")
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                raise FrameSourceError(f"OpenCV cannot open {self.path} as a video")
            declared_fps = capture.get(cv2.CAP_PROP_FPS)
            self._frame_count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        finally:
            capture.release()
        if fps is None:
            if not declared_fps > 0:
                raise FrameSourceError(f"{self.path} declares no frame rate: pass --fps")
            fps = float(declared_fps)
        self.fps = fps

    @property
    def frame_count(self) -> int:
        return self._frame_count

    def __iter__(self) -> Iterator[SourceFrame]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                image = CameraImage(frame, "bgr" if frame.ndim == 3 else "mono")
                yield SourceFrame(_stamp_for_index(index, self.fps), f"frame_{index:06d}",
                                  "video", lambda image=image: image)
                index += 1
        finally:
            capture.release()


def within_window(
    frames: Iterable[SourceFrame], origin_ns: int | None, start_s: float | None,
    end_s: float | None,
) -> Iterator[SourceFrame]:
    """Frames whose stamp lies in [origin + start, origin + end).

    ``origin_ns`` None takes the first frame's stamp, so offsets count from
    the start of the recording.
    """
    for frame in frames:
        if origin_ns is None:
            origin_ns = frame.stamp_ns
        offset_s = (frame.stamp_ns - origin_ns) / 1e9
        if start_s is not None and offset_s < start_s:
            continue
        if end_s is not None and offset_s >= end_s:
            return
        yield frame
