"""Image folders and videos as frame sources: order, stamps, windows, bad files."""

import cv2
import numpy as np
import pytest

from neuflow_ros.imaging.frame_sources import (
    FrameSourceError,
    ImageFolderSource,
    SourceFrame,
    VideoSource,
    within_window,
)
from neuflow_ros.imaging.image_conversion import CameraImage, ImageFormatError


def gradient(value: int) -> np.ndarray:
    """BGR image whose blue channel encodes ``value``, to recognise frames after decoding."""
    image = np.zeros((16, 24, 3), np.uint8)
    image[..., 0] = value
    image[..., 2] = np.arange(24, dtype=np.uint8)[None, :] * 10
    return image


def test_nanosecond_names_are_stamps_and_sorted_numerically(tmp_path):
    # "900" sorts after "1000" as text; the frames must come out by number.
    for value, stamp in ((1, 900), (2, 1000), (3, 25000)):
        cv2.imwrite(str(tmp_path / f"{stamp}.png"), gradient(value))
    (tmp_path / "notes.txt").write_text("ignored")
    source = ImageFolderSource(tmp_path)
    frames = list(source)
    assert source.frame_count == 3
    assert [f.stamp_ns for f in frames] == [900, 1000, 25000]
    assert [f.name for f in frames] == ["900", "1000", "25000"]
    image = frames[1].decode()
    assert image.color_order == "bgr"
    assert int(image.pixels[0, 0, 0]) == 2
    np.testing.assert_array_equal(image.pixels[0, :, 2], np.arange(24) * 10)


def test_other_names_need_fps_and_get_index_stamps(tmp_path):
    for name in ("b.png", "a.png", "c.jpg"):
        cv2.imwrite(str(tmp_path / name), gradient(0))
    with pytest.raises(FrameSourceError, match="--fps"):
        ImageFolderSource(tmp_path)
    frames = list(ImageFolderSource(tmp_path, fps=4.0))
    assert [f.name for f in frames] == ["a", "b", "c"]
    assert [f.stamp_ns for f in frames] == [0, 250_000_000, 500_000_000]
    assert [f.encoding for f in frames] == ["png", "png", "jpg"]


def test_gray_and_sixteen_bit_images_decode_to_eight_bit_mono(tmp_path):
    cv2.imwrite(str(tmp_path / "1.png"), np.full((10, 12), 0x1234, np.uint16))
    cv2.imwrite(str(tmp_path / "2.png"), np.full((10, 12), 77, np.uint8))
    deep, gray = (f.decode() for f in ImageFolderSource(tmp_path))
    assert deep.color_order == "mono" and deep.pixels.dtype == np.uint8
    assert int(deep.pixels[0, 0]) == 0x12
    assert gray.color_order == "mono" and int(gray.pixels[3, 4]) == 77


def test_a_corrupt_file_fails_only_when_decoded(tmp_path):
    cv2.imwrite(str(tmp_path / "1.png"), gradient(1))
    (tmp_path / "2.png").write_bytes(b"not a png")
    frames = list(ImageFolderSource(tmp_path))
    assert frames[0].decode().pixels.shape == (16, 24, 3)
    with pytest.raises(ImageFormatError, match="could not decode"):
        frames[1].decode()


@pytest.mark.parametrize("setup", ["missing", "empty", "bad_fps"])
def test_unusable_folders_are_rejected_with_a_reason(tmp_path, setup):
    if setup == "missing":
        with pytest.raises(FrameSourceError, match="not a folder"):
            ImageFolderSource(tmp_path / "nope")
    elif setup == "empty":
        with pytest.raises(FrameSourceError, match="no images"):
            ImageFolderSource(tmp_path)
    else:
        cv2.imwrite(str(tmp_path / "1.png"), gradient(1))
        with pytest.raises(FrameSourceError, match="positive"):
            ImageFolderSource(tmp_path, fps=0.0)


def test_video_frames_are_stamped_from_index_and_declared_rate(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (24, 16))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG video")
    for value in (40, 120, 200):
        writer.write(gradient(value))
    writer.release()
    source = VideoSource(path)
    frames = list(source)
    assert source.fps == pytest.approx(20.0)
    assert [f.stamp_ns for f in frames] == [0, 50_000_000, 100_000_000]
    blues = [int(np.median(f.decode().pixels[..., 0])) for f in frames]
    assert blues == pytest.approx([40, 120, 200], abs=6)  # MJPG is lossy
    assert [f.stamp_ns for f in VideoSource(path, fps=10.0)] == [0, 100_000_000, 200_000_000]


def test_a_file_that_is_no_video_is_rejected(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(FrameSourceError, match="cannot open"):
        VideoSource(path)


def test_window_counts_offsets_from_the_first_frame():
    image = CameraImage(np.zeros((8, 8), np.uint8), "mono")
    frames = [SourceFrame(5_000_000_000 + i * 100_000_000, str(i), "png", lambda: image)
              for i in range(10)]
    picked = list(within_window(frames, None, 0.25, 0.55))
    assert [f.name for f in picked] == ["3", "4", "5"]
    assert [f.name for f in within_window(frames, None, None, 0.1)] == ["0"]
    assert len(list(within_window(frames, 4_000_000_000, 1.8, None))) == 2
