"""`neuflow-demo` end to end: replay process -> node process -> this process, over DDS.

Small frames at a low rate keep it quick on a 2-core CI machine. What must
hold is derived from the graph itself: every frame the replay sent is either
a flow, counted as dropped or reset by the node, or the first frame (nothing
to pair it with); the flow error against the synthetic scene's known motion
stays sub-pixel (OpenCV DIS is within about 0.2 px on it); the picture has
the 2x2 layout of the frame size.
"""

from __future__ import annotations

import json

import cv2
import pytest

from neuflow_ros.imaging.synthetic_sequence import SyntheticSequence
from neuflow_ros.tools.demo import PICTURE_NAME, SUMMARY_NAME, main

WIDTH, HEIGHT = 160, 120
FRAMES = 20
RATE_HZ = 15.0
DIS_ERROR_BOUND_PX = 0.5


def run_demo(tmp_path, *extra: str) -> dict:
    output = tmp_path / "demo_output"
    code = main(["--width", str(WIDTH), "--height", str(HEIGHT), "--frames", str(FRAMES),
                 "--rate", str(RATE_HZ), "--output", str(output), *extra])
    assert code == 0
    picture = cv2.imread(str(output / PICTURE_NAME))
    assert picture is not None, "picture missing or unreadable"
    assert picture.shape == (2 * HEIGHT, 2 * WIDTH, 3)
    return json.loads((output / SUMMARY_NAME).read_text())


def assert_every_frame_accounted_for(summary: dict) -> None:
    assert summary["frames_sent"] == FRAMES
    assert summary["frames_received_by_node"] == FRAMES
    expected_flows = FRAMES - summary["frames_dropped"] - summary["stream_resets"] - 1
    assert summary["flows_received"] == expected_flows
    assert summary["flows_published"] == expected_flows
    assert 0 < summary["latency_min_ms"] <= summary["latency_p50_ms"]
    assert summary["latency_p50_ms"] <= summary["latency_p95_ms"] <= summary["latency_max_ms"]


def test_demo_on_the_synthetic_scene(tmp_path, capsys) -> None:
    summary = run_demo(tmp_path)

    assert_every_frame_accounted_for(summary)
    assert summary["flows_received"] >= FRAMES // 2
    assert summary["flow_error_px"] < DIS_ERROR_BOUND_PX
    # No checkpoint: NeuFlow was asked for, the node fell back to DIS and said why.
    assert summary["requested_backend"] == "neuflow_v2"
    assert summary["backend"] == "dis"
    assert any("checkpoint" in warning for warning in summary["warnings"])
    printed = capsys.readouterr().out
    assert "p50" in printed and "p95" in printed
    assert f"{summary['flow_error_px']:.3f} px" in printed


def test_demo_on_a_folder_of_images(tmp_path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    sequence = SyntheticSequence(WIDTH, HEIGHT)
    for index in range(FRAMES):
        cv2.imwrite(str(folder / f"frame_{index:03d}.png"),
                    cv2.cvtColor(sequence.frame(index), cv2.COLOR_RGB2BGR))

    summary = run_demo(tmp_path, str(folder), "--backend", "dis", "--no-tracking")

    assert_every_frame_accounted_for(summary)
    assert summary["flow_error_px"] is None  # no known motion for recorded frames
    assert summary["source"] == str(folder)
    assert not any("checkpoint" in warning for warning in summary["warnings"])


def test_bad_arguments_fail_before_anything_starts(tmp_path, capsys) -> None:
    assert main(["--frames", "1", "--output", str(tmp_path)]) == 2
    assert "at least 2 frames" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--backend", "raft"])


def test_a_node_that_cannot_start_is_reported_with_its_own_message(tmp_path, capsys) -> None:
    checkpoint = tmp_path / "broken.pth"
    checkpoint.write_bytes(b"not a checkpoint")

    code = main(["--checkpoint", str(checkpoint), "--width", str(WIDTH), "--height",
                 str(HEIGHT), "--output", str(tmp_path / "out")])

    assert code == 1
    error = capsys.readouterr().err
    assert "neuflow node exited with code 1" in error
    assert "cannot start the flow engine" in error  # the node's own FATAL line, passed on
    assert not (tmp_path / "out" / PICTURE_NAME).exists()
