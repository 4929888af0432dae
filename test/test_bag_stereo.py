"""neuflow-bag --right-image-topic on a recorded rectified stereo pair with known disparity.

The left camera sees a texture translating by SHIFT per frame, the right
camera the same texture DISPARITY px to the left: every left track's right
match and every disparity value is known. The bag is written with rosbags'
writer and the output read back with rosbags, as in test_bag_tool.
"""

from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_typestore
from stereo_rigs import HEIGHT, WIDTH, camera_info_fields, rectified_rig
from test_bag_tool import read_bag, typestore_from_bag

from neuflow_ros.imaging.synthetic_sequence import interior_margin, textured_image
from neuflow_ros.tools.bag_tool import main

STANDARD = get_typestore(Stores.LATEST)
DISPARITY = 6.5
SHIFT = (1.25, -0.5)
FRAMES = 6
FIRST_STAMP_NS = 1_700_000_000_000_000_000
PERIOD_NS = 100_000_000
TOPICS = {"left": ("/stereo/left/image", "/stereo/left/camera_info"),
          "right": ("/stereo/right/image", "/stereo/right/camera_info")}
FAST = ["--backend", "dis", "--dis-preset", "medium", "--threads", "1", "--max-tracks", "80",
        "--min-distance", "8"]


def frame(side: str, index: int) -> np.ndarray:
    shift_x, shift_y = SHIFT[0] * index, SHIFT[1] * index
    if side == "right":
        shift_x -= DISPARITY
    return textured_image(WIDTH, HEIGHT, (shift_x, shift_y))


def write_stereo_bag(path: Path) -> Path:
    types = STANDARD.types
    sides = dict(zip(("left", "right"), rectified_rig(), strict=True))
    with Writer(path, version=8) as writer:
        connections = {
            side: (writer.add_connection(image, "sensor_msgs/msg/Image", typestore=STANDARD),
                   writer.add_connection(info, "sensor_msgs/msg/CameraInfo",
                                         typestore=STANDARD))
            for side, (image, info) in TOPICS.items()
        }
        for index in range(FRAMES):
            stamp = FIRST_STAMP_NS + index * PERIOD_NS
            header = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=stamp // 10**9,
                                                           nanosec=stamp % 10**9),
                frame_id="left")
            # The right frame is received a few ms after the left one, as from two drivers.
            for offset_ns, side in ((3_000_000, "left"), (5_000_000, "right")):
                fields = camera_info_fields(sides[side])
                info = types["sensor_msgs/msg/CameraInfo"](
                    header=header, height=fields["height"], width=fields["width"],
                    distortion_model=fields["distortion_model"], d=np.array(fields["d"]),
                    k=np.array(fields["k"]), r=np.array(fields["r"]), p=np.array(fields["p"]),
                    binning_x=0, binning_y=0,
                    roi=types["sensor_msgs/msg/RegionOfInterest"](
                        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
                image = types["sensor_msgs/msg/Image"](
                    header=header, height=HEIGHT, width=WIDTH, encoding="rgb8", is_bigendian=0,
                    step=WIDTH * 3, data=frame(side, index).reshape(-1))
                image_connection, info_connection = connections[side]
                writer.write(info_connection, stamp + offset_ns - 1,
                             STANDARD.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
                writer.write(image_connection, stamp + offset_ns,
                             STANDARD.serialize_cdr(image, "sensor_msgs/msg/Image"))
    return path


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bag_stereo")
    source = write_stereo_bag(folder / "stereo")
    output = folder / "out"
    code = main([str(source), str(output), "--image-topic", TOPICS["left"][0],
                 "--camera-info-topic", TOPICS["left"][1], "--right-image-topic",
                 TOPICS["right"][0], "--right-camera-info-topic", TOPICS["right"][1], *FAST])
    assert code == 0
    return output


def messages(output: Path, topic: str) -> list:
    typestore = typestore_from_bag(output)
    return [typestore.deserialize_cdr(raw, msgtype)
            for _, raw, msgtype, _ in read_bag(output).get(topic, [])]


def test_left_tracks_carry_their_right_match_at_the_known_disparity(processed):
    arrays = messages(processed, "/neuflow/tracks")
    assert len(arrays) == FRAMES - 1
    tracks = [track for array in arrays for track in array.tracks]
    matched = [track for track in tracks if np.isfinite(track.right_x)]
    assert len(matched) >= 0.6 * len(tracks)
    left = np.array([[track.x, track.y] for track in matched])
    right = np.array([[track.right_x, track.right_y] for track in matched])
    np.testing.assert_allclose(right, left - [DISPARITY, 0.0], atol=0.2)
    np.testing.assert_allclose([track.disparity for track in matched], DISPARITY, atol=0.2)


def test_a_disparity_image_per_matched_pair_holds_the_known_disparity(processed):
    images = messages(processed, "/neuflow/disparity")
    assert len(images) == FRAMES - 1
    margin = interior_margin(WIDTH, HEIGHT) + int(np.ceil(DISPARITY))
    for message in images:
        values = np.frombuffer(message.image.data.tobytes(), dtype="<f4").reshape(HEIGHT, WIDTH)
        interior = values[margin:-margin, margin:-margin]
        assert np.mean(interior >= 0.0) >= 0.95
        assert np.abs(interior[interior >= 0.0] - DISPARITY).max() <= 0.5
        assert message.t == pytest.approx(0.12)


def test_without_the_right_camera_info_there_are_no_matches_and_a_warning(tmp_path, capsys):
    source = write_stereo_bag(tmp_path / "stereo")
    assert main([str(source), str(tmp_path / "out"), "--image-topic", TOPICS["left"][0],
                 "--camera-info-topic", TOPICS["left"][1], "--right-image-topic",
                 TOPICS["right"][0], *FAST]) == 0
    err = capsys.readouterr().err
    assert "stereo matching off (missing_camera_info)" in err
    assert "disabled: missing_camera_info 5" in err
    arrays = messages(tmp_path / "out", "/neuflow/tracks")
    assert all(np.isnan(track.right_x) for array in arrays for track in array.tracks)
    assert len(messages(tmp_path / "out", "/neuflow/disparity")) == 0
