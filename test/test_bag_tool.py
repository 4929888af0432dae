"""neuflow-bag end to end on small synthetic recordings with a known motion.

Every frame is an analytic texture translated by SHIFT pixels per frame, so
the true flow is SHIFT everywhere; the bags are written with rosbags' own
writer and the outputs read back with rosbags, as a user's tools would.
"""

import csv
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from neuflow_ros.imaging.flow_io import read_flo, read_kitti_flow
from neuflow_ros.imaging.synthetic_sequence import Motion, SyntheticSequence
from neuflow_ros.tools import bag_runner
from neuflow_ros.tools.bag_tool import main
from neuflow_ros.tools.progress_report import ProgressReport

REPO = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT, FRAMES = 96, 64, 6
SHIFT = (1.5, -0.75)
FIRST_STAMP_NS = 1_700_000_000_000_000_000
PERIOD_NS = 100_000_000
RECEIVE_DELAY_NS = 7_000_000
FX, FY, CX, CY = 80.0, 82.0, 47.5, 31.5
IMAGE_TOPIC = "/cam/image"
COMPRESSED_TOPIC = "/cam/image/compressed"
INFO_TOPIC = "/cam/camera_info"
CHATTER_TOPIC = "/chatter"
STANDARD = get_typestore(Stores.LATEST)
# DIS "medium" is accurate to ~0.02 px on this texture; "fast" is biased by ~0.15 px.
FAST = ["--backend", "dis", "--dis-preset", "medium", "--threads", "1", "--max-tracks", "60",
        "--min-distance", "8"]


_SEQUENCE = SyntheticSequence(WIDTH, HEIGHT, Motion(*SHIFT, rotation_deg=0.0, zoom=1.0))


def textured_frame(index: int) -> np.ndarray:
    """RGB frame ``index`` of a scene translating by SHIFT per frame (exact, analytic)."""
    return _SEQUENCE.frame(index)


def header(index: int):
    stamp = FIRST_STAMP_NS + index * PERIOD_NS
    time = STANDARD.types["builtin_interfaces/msg/Time"](
        sec=stamp // 10**9, nanosec=stamp % 10**9)
    return STANDARD.types["std_msgs/msg/Header"](stamp=time, frame_id="camera")


def receive_time(index: int) -> int:
    return FIRST_STAMP_NS + index * PERIOD_NS + RECEIVE_DELAY_NS


def write_bag(path: Path, storage: str = "sqlite3", compressed: bool = False,
              encoding: str = "rgb8", frames: int = FRAMES) -> Path:
    types = STANDARD.types
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        if compressed:
            images = writer.add_connection(COMPRESSED_TOPIC, "sensor_msgs/msg/CompressedImage",
                                           typestore=STANDARD)
        else:
            images = writer.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/Image",
                                           typestore=STANDARD)
        info = writer.add_connection(INFO_TOPIC, "sensor_msgs/msg/CameraInfo",
                                     typestore=STANDARD)
        chatter = writer.add_connection(CHATTER_TOPIC, "std_msgs/msg/String", typestore=STANDARD)
        writer.write(chatter, receive_time(0) - 1000,
                     STANDARD.serialize_cdr(types["std_msgs/msg/String"](data="takeoff"),
                                            "std_msgs/msg/String"))
        for index in range(frames):
            rgb = textured_frame(index)
            if compressed:
                ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                assert ok
                message = types["sensor_msgs/msg/CompressedImage"](
                    header=header(index), format="rgb8; png compressed bgr8",
                    data=png.reshape(-1))
                msgtype = "sensor_msgs/msg/CompressedImage"
            else:
                message = types["sensor_msgs/msg/Image"](
                    header=header(index), height=HEIGHT, width=WIDTH, encoding=encoding,
                    is_bigendian=0, step=WIDTH * 3, data=rgb.reshape(-1))
                msgtype = "sensor_msgs/msg/Image"
            writer.write(images, receive_time(index), STANDARD.serialize_cdr(message, msgtype))
            camera_info = types["sensor_msgs/msg/CameraInfo"](
                header=header(index), height=HEIGHT, width=WIDTH, distortion_model="plumb_bob",
                d=np.zeros(5), k=np.array([FX, 0, CX, 0, FY, CY, 0, 0, 1.0]),
                r=np.eye(3).reshape(-1), p=np.array([FX, 0, CX, 0, 0, FY, CY, 0, 0, 0, 1, 0.0]),
                binning_x=0, binning_y=0,
                roi=types["sensor_msgs/msg/RegionOfInterest"](
                    x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
            writer.write(info, receive_time(index) + 1,
                         STANDARD.serialize_cdr(camera_info, "sensor_msgs/msg/CameraInfo"))
    return path


def read_bag(path: Path) -> dict[str, list[tuple[int, bytes, str, object]]]:
    """topic -> [(bag time, raw, msgtype, connection)] in bag order."""
    out: dict[str, list] = {}
    with Reader(path) as reader:
        for connection, timestamp, raw in reader.messages():
            out.setdefault(connection.topic, []).append(
                (timestamp, bytes(raw), connection.msgtype, connection))
    return out


def typestore_from_bag(path: Path):
    """A typestore that knows ONLY what the bag's connections define."""
    typestore = get_typestore(Stores.EMPTY)
    with Reader(path) as reader:
        for connection in reader.connections:
            typestore.register(get_types_from_msg(connection.msgdef.data, connection.msgtype))
    return typestore


def interior(flow: np.ndarray) -> np.ndarray:
    return flow[12:-12, 12:-12].reshape(-1, 2)


@pytest.fixture(scope="module")
def raw_bag(tmp_path_factory):
    return write_bag(tmp_path_factory.mktemp("in") / "raw_bag")


@pytest.fixture(scope="module")
def processed(raw_bag, tmp_path_factory):
    output = tmp_path_factory.mktemp("out") / "processed"
    code = main([str(raw_bag), str(output), "--image-topic", IMAGE_TOPIC,
                 "--camera-info-topic", INFO_TOPIC, "--flow-vis", *FAST])
    assert code == 0
    return output


def test_one_flow_message_per_pair_with_image_stamps_and_known_motion(processed):
    messages = read_bag(processed)
    flows = messages["/neuflow/flow"]
    assert len(flows) == FRAMES - 1
    typestore = typestore_from_bag(processed)
    for pair, (timestamp, raw, msgtype, _) in enumerate(flows, start=1):
        assert msgtype == "neuflow_ros/msg/OpticalFlow"
        assert timestamp == receive_time(pair)
        message = typestore.deserialize_cdr(raw, msgtype)
        assert message.header.stamp.sec * 10**9 + message.header.stamp.nanosec == \
            FIRST_STAMP_NS + pair * PERIOD_NS
        assert message.header.frame_id == "camera"
        previous = message.previous_stamp
        assert previous.sec * 10**9 + previous.nanosec == FIRST_STAMP_NS + (pair - 1) * PERIOD_NS
        assert (message.input_width, message.input_height) == (WIDTH, HEIGHT)
        image = message.flow
        assert (image.encoding, image.width, image.height, image.step) == \
            ("32FC2", WIDTH, HEIGHT, WIDTH * 8)
        assert image.is_bigendian == 0
        flow = np.frombuffer(image.data.tobytes(), "<f4").reshape(HEIGHT, WIDTH, 2)
        median = np.median(interior(flow), axis=0)
        np.testing.assert_allclose(median, SHIFT, atol=0.15)


def test_tracks_keep_their_ids_and_follow_the_motion(processed):
    typestore = typestore_from_bag(processed)
    arrays = [typestore.deserialize_cdr(raw, msgtype)
              for _, raw, msgtype, _ in read_bag(processed)["/neuflow/tracks"]]
    assert len(arrays) == FRAMES - 1
    by_id = [{t.id: t for t in array.tracks} for array in arrays]
    assert all(len(tracks) > 10 for tracks in by_id)
    for earlier, later in itertools.pairwise(by_id):
        kept = set(earlier) & set(later)
        assert len(kept) >= 0.8 * len(earlier)
        for track_id in kept:
            assert later[track_id].age == earlier[track_id].age + 1
            assert later[track_id].previous_x == pytest.approx(earlier[track_id].x)
            moved = (later[track_id].x - later[track_id].previous_x,
                     later[track_id].y - later[track_id].previous_y)
            np.testing.assert_allclose(moved, SHIFT, atol=0.3)
    track = next(t for t in arrays[-1].tracks if t.age > 1)
    # Undistorted normalized coordinates of a lens without distortion: (x - cx) / fx.
    assert track.normalized_x == pytest.approx((track.x - CX) / FX, abs=1e-5)
    assert track.normalized_y == pytest.approx((track.y - CY) / FY, abs=1e-5)
    assert track.velocity_x == pytest.approx(SHIFT[0] / (PERIOD_NS / 1e9), abs=3.0)


def test_original_topics_are_copied_byte_for_byte(raw_bag, processed):
    original = read_bag(raw_bag)
    copied = read_bag(processed)
    for topic in (IMAGE_TOPIC, INFO_TOPIC, CHATTER_TOPIC):
        assert [(t, raw, msgtype) for t, raw, msgtype, _ in copied[topic]] == \
            [(t, raw, msgtype) for t, raw, msgtype, _ in original[topic]]
    vis = copied["/neuflow/flow_vis"]
    assert len(vis) == FRAMES - 1
    image = STANDARD.deserialize_cdr(vis[0][1], "sensor_msgs/msg/Image")
    assert (image.encoding, image.width, image.height) == ("rgb8", WIDTH, HEIGHT)
    assert list((processed).glob("*.db3"))


def test_registered_definitions_match_the_rosidl_hashes(processed):
    share = [Path(p) / "share" / "neuflow_ros" / "msg"
             for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    share = [d for d in share if (d / "OpticalFlow.json").is_file()]
    if not share:
        pytest.skip("package not built: no share/neuflow_ros/msg/*.json from rosidl")
    with Reader(processed) as reader:
        digests = {c.msgtype: c.digest for c in reader.connections}
    for name in ("OpticalFlow", "TrackArray"):
        description = json.loads((share[0] / f"{name}.json").read_text())
        expected = {h["type_name"]: h["hash_string"] for h in description["type_hashes"]}
        assert digests[f"neuflow_ros/msg/{name}"] == expected[f"neuflow_ros/msg/{name}"]


def test_compressed_mcap_bag_gives_the_same_kind_of_output(tmp_path):
    source = write_bag(tmp_path / "compressed", storage="mcap", compressed=True)
    output = tmp_path / "out"
    assert main([str(source), str(output), "--image-topic", COMPRESSED_TOPIC, "--no-tracks",
                 *FAST]) == 0
    assert list(output.glob("*.mcap"))
    messages = read_bag(output)
    assert "/neuflow/tracks" not in messages
    flows = messages["/neuflow/flow"]
    assert len(flows) == FRAMES - 1
    typestore = typestore_from_bag(output)
    message = typestore.deserialize_cdr(flows[-1][1], "neuflow_ros/msg/OpticalFlow")
    flow = np.frombuffer(message.flow.data.tobytes(), "<f4").reshape(HEIGHT, WIDTH, 2)
    np.testing.assert_allclose(np.median(interior(flow), axis=0), SHIFT, atol=0.15)


def test_two_runs_write_identical_payloads(raw_bag, processed, tmp_path):
    again = tmp_path / "again"
    assert main([str(raw_bag), str(again), "--image-topic", IMAGE_TOPIC,
                 "--camera-info-topic", INFO_TOPIC, "--flow-vis", *FAST]) == 0
    first, second = read_bag(processed), read_bag(again)
    assert first.keys() == second.keys()
    for topic in first:
        assert [(t, raw) for t, raw, _, _ in first[topic]] == \
            [(t, raw) for t, raw, _, _ in second[topic]]


def test_missing_topic_is_one_line_listing_the_image_topics(raw_bag, tmp_path, capsys):
    output = tmp_path / "never"
    assert main([str(raw_bag), str(output), "--image-topic", "/nope", *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "'/nope'" in err and IMAGE_TOPIC in err
    assert not output.exists()


def test_unknown_encoding_and_unreadable_bag_are_clear_errors(tmp_path, capsys):
    odd = write_bag(tmp_path / "odd", encoding="weird8", frames=2)
    assert main([str(odd), str(tmp_path / "o1"), "--image-topic", IMAGE_TOPIC, *FAST]) == 2
    assert "unsupported encoding 'weird8'" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("not: [a bag")
    assert main([str(broken), str(tmp_path / "o2"), "--image-topic", IMAGE_TOPIC, *FAST]) == 2
    err = capsys.readouterr().err
    assert "cannot read bag" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_existing_output_needs_overwrite_and_only_replaces_a_bag(raw_bag, processed, tmp_path,
                                                                 capsys):
    copy = tmp_path / "copy"
    shutil.copytree(processed, copy)
    args = [str(raw_bag), str(copy), "--image-topic", IMAGE_TOPIC, "--no-tracks", *FAST]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert "/neuflow/tracks" not in read_bag(copy)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    assert main([str(raw_bag), str(precious), "--image-topic", IMAGE_TOPIC, "--overwrite",
                 *FAST]) == 2
    assert (precious / "thesis.tex").is_file()


def test_ctrl_c_leaves_a_valid_bag_with_the_work_done(raw_bag, tmp_path, monkeypatch, capsys):
    real = bag_runner.iterate_messages

    def interrupted_after_four_images(reader, start, stop):
        images = 0
        for item in real(reader, start, stop):
            if item[0].topic == IMAGE_TOPIC:
                images += 1
                if images == 5:
                    raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(bag_runner, "iterate_messages", interrupted_after_four_images)
    output = tmp_path / "partial"
    assert main([str(raw_bag), str(output), "--image-topic", IMAGE_TOPIC, *FAST]) == 130
    assert "interrupted" in capsys.readouterr().err
    messages = read_bag(output)
    assert len(messages["/neuflow/flow"]) == 3
    assert len(messages[IMAGE_TOPIC]) == 4


def test_time_window_selects_frames(raw_bag, tmp_path):
    output = tmp_path / "window"
    # Bag time starts at the chatter message, just before image 0.
    assert main([str(raw_bag), str(output), "--image-topic", IMAGE_TOPIC, "--start", "0.15",
                 "--end", "0.45", *FAST]) == 0
    messages = read_bag(output)
    assert [t for t, *_ in messages[IMAGE_TOPIC]] == [receive_time(i) for i in (2, 3, 4)]
    assert len(messages["/neuflow/flow"]) == 2


def test_entry_script_runs_as_a_separate_process(raw_bag, tmp_path):
    installed = shutil.which("neuflow-bag")
    command = [installed] if installed else [sys.executable, str(REPO / "scripts" / "neuflow-bag")]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    output = tmp_path / "subprocess"
    done = subprocess.run([*command, str(raw_bag), str(output), "--image-topic", IMAGE_TOPIC,
                           "--no-tracks", *FAST], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{FRAMES} frames, {FRAMES - 1} flow pairs" in done.stderr
    assert len(read_bag(output)["/neuflow/flow"]) == FRAMES - 1


def write_frames_folder(folder: Path, stamps: list[int]) -> Path:
    folder.mkdir()
    for index, stamp in enumerate(stamps):
        bgr = cv2.cvtColor(textured_frame(index), cv2.COLOR_RGB2BGR)
        assert cv2.imwrite(str(folder / f"{stamp}.png"), bgr)
    return folder


def test_image_folder_gives_flo_files_index_and_tracks(tmp_path):
    stamps = [FIRST_STAMP_NS + i * PERIOD_NS for i in range(FRAMES)]
    folder = write_frames_folder(tmp_path / "frames", stamps)
    output = tmp_path / "flow_out"
    assert main([str(folder), str(output), "--flow-vis", *FAST]) == 0
    with (output / "flow_index.csv").open() as file:
        index = list(csv.DictReader(file))
    assert [int(row["stamp_ns"]) for row in index] == stamps[1:]
    assert [int(row["previous_stamp_ns"]) for row in index] == stamps[:-1]
    for row in index:
        flow = read_flo(output / row["flow_file"])
        assert flow.shape == (HEIGHT, WIDTH, 2)
        np.testing.assert_allclose(np.median(interior(flow), axis=0), SHIFT, atol=0.15)
        assert row["flow_file"] == f"flow/{row['previous_frame']}.flo"
        assert (output / "flow_vis" / f"{row['previous_frame']}.png").is_file()
    with (output / "tracks.csv").open() as file:
        tracks = list(csv.DictReader(file))
    carried = [row for row in tracks if int(row["age"]) > 1]
    assert carried
    for row in carried:
        moved = (float(row["x"]) - float(row["previous_x"]),
                 float(row["y"]) - float(row["previous_y"]))
        np.testing.assert_allclose(moved, SHIFT, atol=0.3)


def test_kitti_output_and_a_gap_that_restarts_the_flow(tmp_path, capsys):
    stamps = [i * PERIOD_NS for i in range(3)] + [5 * 10**9 + i * PERIOD_NS for i in range(3)]
    folder = write_frames_folder(tmp_path / "gap", stamps)
    output = tmp_path / "kitti"
    assert main([str(folder), str(output), "--flow-format", "kitti", "--max-frame-gap", "1",
                 *FAST]) == 0
    assert "1 resets (gap_too_large 1)" in capsys.readouterr().err
    files = sorted((output / "flow").glob("*.png"))
    assert len(files) == 4  # 2 pairs before the gap, 2 after it
    flow, valid = read_kitti_flow(files[0])
    assert valid.all()
    np.testing.assert_allclose(np.median(interior(flow), axis=0), SHIFT, atol=0.15)


@pytest.mark.parametrize("flow_format", ["flo", "kitti"])
def test_flow_files_are_named_after_the_earlier_frame_of_their_pair(tmp_path, flow_format):
    """As Sintel, Middlebury and KITTI: frame_0001.flo is the flow frame_0001 -> frame_0002.

    The second pair does not move, so a file named after the wrong frame of
    its pair holds the wrong flow.
    """
    folder = tmp_path / "frames"
    folder.mkdir()
    for number, index in ((1, 0), (2, 1), (3, 1)):
        bgr = cv2.cvtColor(textured_frame(index), cv2.COLOR_RGB2BGR)
        assert cv2.imwrite(str(folder / f"frame_{number:04d}.png"), bgr)
    output = tmp_path / "out"
    assert main([str(folder), str(output), "--fps", "10", "--flow-format", flow_format,
                 "--flow-vis", "--no-tracks", *FAST]) == 0
    suffix = ".flo" if flow_format == "flo" else ".png"
    assert sorted(p.name for p in (output / "flow").iterdir()) == [
        f"frame_0001{suffix}", f"frame_0002{suffix}"]
    assert sorted(p.name for p in (output / "flow_vis").iterdir()) == [
        "frame_0001.png", "frame_0002.png"]
    expected_motion = {"frame_0001": SHIFT, "frame_0002": (0.0, 0.0)}
    for name, motion in expected_motion.items():
        path = output / "flow" / f"{name}{suffix}"
        flow = read_flo(path) if flow_format == "flo" else read_kitti_flow(path)[0]
        np.testing.assert_allclose(np.median(interior(flow), axis=0), motion, atol=0.15)
    with (output / "flow_index.csv").open() as file:
        index = [(row["flow_file"], row["previous_frame"], row["frame"],
                  int(row["previous_stamp_ns"]), int(row["stamp_ns"]))
                 for row in csv.DictReader(file)]
    assert index == [
        (f"flow/frame_0001{suffix}", "frame_0001", "frame_0002", 0, PERIOD_NS),
        (f"flow/frame_0002{suffix}", "frame_0002", "frame_0003", PERIOD_NS, 2 * PERIOD_NS),
    ]


def write_video(path: Path) -> Path:
    """FRAMES textured frames at 10 Hz as MJPG (skips the test where OpenCV cannot write it)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (WIDTH, HEIGHT))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG video")
    for index in range(FRAMES):
        writer.write(cv2.cvtColor(textured_frame(index), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_video_gives_flo_files_near_the_known_motion(tmp_path):
    video = write_video(tmp_path / "flight.avi")
    output = tmp_path / "video_out"
    assert main([str(video), str(output), "--no-tracks", *FAST]) == 0
    with (output / "flow_index.csv").open() as file:
        index = list(csv.DictReader(file))
    assert [int(row["stamp_ns"]) for row in index] == [i * PERIOD_NS for i in range(1, FRAMES)]
    assert not (output / "tracks.csv").exists()
    for row in index:
        flow = read_flo(output / row["flow_file"])
        np.testing.assert_allclose(np.median(interior(flow), axis=0), SHIFT, atol=0.25)


@pytest.mark.parametrize("kind", ["folder", "video"])
def test_no_flow_files_writes_only_the_tracks_and_the_index(tmp_path, kind):
    if kind == "folder":
        stamps = [FIRST_STAMP_NS + i * PERIOD_NS for i in range(FRAMES)]
        source = write_frames_folder(tmp_path / "frames", stamps)
    else:
        stamps = [i * PERIOD_NS for i in range(FRAMES)]
        source = write_video(tmp_path / "flight.avi")
    output = tmp_path / "tracks_only"
    assert main([str(source), str(output), "--no-flow-files", *FAST]) == 0
    assert sorted(p.name for p in output.iterdir()) == ["flow_index.csv", "tracks.csv"]
    with (output / "flow_index.csv").open() as file:
        index = list(csv.DictReader(file))
    assert [int(row["stamp_ns"]) for row in index] == stamps[1:]
    assert {row["flow_file"] for row in index} == {""}
    with (output / "tracks.csv").open() as file:
        carried = [row for row in csv.DictReader(file) if int(row["age"]) > 1]
    assert {int(row["stamp_ns"]) for row in carried} == set(stamps[1:])
    moves = [(float(row["x"]) - float(row["previous_x"]),
              float(row["y"]) - float(row["previous_y"])) for row in carried]
    np.testing.assert_allclose(np.median(moves, axis=0), SHIFT, atol=0.3)
    # No backward flow by default, so no forward-backward error.
    assert {row["error"] for row in carried} == {"nan"}


def test_no_flow_files_is_refused_where_it_cannot_apply(raw_bag, tmp_path, capsys):
    folder = write_frames_folder(tmp_path / "frames", [i * PERIOD_NS for i in range(2)])
    runs = {
        "bag": [str(raw_bag), str(tmp_path / "o1"), "--image-topic", IMAGE_TOPIC],
        "nothing to write": [str(folder), str(tmp_path / "o2"), "--no-tracks"],
    }
    for expected, arguments in runs.items():
        assert main([*arguments, "--no-flow-files", *FAST]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--no-flow-files" in err, err
        assert "Traceback" not in err and ("bag" not in expected or "video input only" in err)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_detector_options_reach_the_tracker(tmp_path, capsys):
    stamps = [FIRST_STAMP_NS + i * PERIOD_NS for i in range(FRAMES)]
    folder = write_frames_folder(tmp_path / "frames", stamps)
    output = tmp_path / "interval"
    assert main([str(folder), str(output), "--no-flow-files", "--detection-interval", "2",
                 "--block-size", "5", "--detection-tile", "32", "--quality-level", "0.02",
                 "--forward-backward", "--residual-ratio", "3", *FAST]) == 0
    with (output / "tracks.csv").open() as file:
        rows = list(csv.DictReader(file))
    born = {int(row["stamp_ns"]) for row in rows if int(row["age"]) == 1}
    errors = [float(row["error"]) for row in rows if int(row["age"]) > 1]
    assert errors and all(0.0 <= error <= 1.0 for error in errors), errors
    # The first detection is on frame 0, which no row describes; then frames 2, 4, ...
    assert born and born <= set(stamps[2::2]), sorted((s - stamps[0]) // PERIOD_NS for s in born)
    capsys.readouterr()
    assert main([str(folder), str(tmp_path / "bad"), "--detection-tile", "8", *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert "detection_tile" in err and len(err.splitlines()) == 1, err


def test_a_corrupt_image_is_counted_and_restarts_the_flow(tmp_path, capsys):
    stamps = [FIRST_STAMP_NS + i * PERIOD_NS for i in range(FRAMES)]
    folder = write_frames_folder(tmp_path / "corrupt", stamps)
    (folder / f"{stamps[2]}.png").write_bytes(b"broken")
    output = tmp_path / "out"
    assert main([str(folder), str(output), *FAST]) == 0
    err = capsys.readouterr().err
    assert f"frame {stamps[2]}: skipped" in err
    assert "6 frames, 3 flow pairs" in err and "1 errors" in err
    names = sorted(p.stem for p in (output / "flow").glob("*.flo"))
    # Pairs 0 -> 1, 3 -> 4 and 4 -> 5, each named after its earlier frame.
    assert names == sorted(str(s) for s in (stamps[0], stamps[3], stamps[4]))


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_on_a_log_stream_is_a_line_every_interval(tmp_path):
    clock = FakeClock()
    with (tmp_path / "log.txt").open("w+") as stream:
        report = ProgressReport(stream, interval_s=10.0, clock=clock)
        report.start(100)
        for done in range(1, 41):
            clock.now = done * 0.5  # 2 frames per second
            report.update(done)
        stream.seek(0)
        lines = stream.read().splitlines()
    # Reports at t = 10 s and 20 s: 80 and 60 frames left at 2 frames per second.
    assert lines == ["20/100 frames (20%), 2.0 frames/s, ETA 0:40",
                     "40/100 frames (40%), 2.0 frames/s, ETA 0:30"]
