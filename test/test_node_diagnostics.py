"""NodeHealth and friends: rates, percentiles, counters and the OK/WARN/ERROR rules."""

import math

import pytest

from neuflow_ros.node.diagnostics import (
    ERROR,
    OK,
    WARN,
    DiagnosticThresholds,
    EventWindow,
    FailureLog,
    NodeHealth,
    WarningThrottle,
)
from neuflow_ros.node.flow_worker import EngineCall


def test_event_window_rate_covers_only_the_window():
    window = EventWindow(window_s=2.0)
    for index in range(60):  # 30 Hz for 2 s
        window.add(index / 30.0)
    assert window.rate(2.0) == pytest.approx(30.0, rel=0.05)
    assert window.rate(3.0) == pytest.approx(15.0, rel=0.1)  # the first second expired
    assert window.rate(10.0) == 0.0


def test_event_window_rate_before_the_window_is_full():
    window = EventWindow(window_s=5.0)
    for index in range(10):  # 10 Hz for one second only
        window.add(index / 10.0)
    assert window.rate(1.0) == pytest.approx(10.0, rel=0.01)


def test_event_window_percentiles_use_nearest_rank():
    window = EventWindow(window_s=100.0)
    assert math.isnan(window.percentile(0.0, 0.5))
    for value in range(1, 101):
        window.add(1.0, float(value))
    assert window.percentile(1.0, 0.5) == 50.0
    assert window.percentile(1.0, 0.95) == 95.0
    assert window.percentile(1.0, 1.0) == 100.0


def test_event_window_rejects_non_positive_window():
    with pytest.raises(ValueError, match="window"):
        EventWindow(0.0)


def _values(report):
    return dict(report.values)


def _camera(health, now):
    return health.report(now)[1]


def test_counters_and_ok_status_for_a_healthy_camera():
    health = NodeHealth("neuflow", {"": "/image"})
    health.engine_ready({"backend": "dis", "device": "cpu", "precision": "fp32"})
    for index in range(30):
        now = index / 30.0
        health.frame_received("", now, callback_s=0.001)
        health.frame_taken("", now, queue_wait_s=0.002, stamp_ns=1_000_000_000 + index)
        if index:
            health.flow_published("", now, latency_s=0.010 + index * 1e-4, publish_s=0.003)
    engine, camera = health.report(1.0)
    assert engine.level == OK
    assert camera.level == OK
    assert camera.name == "neuflow: camera"
    values = _values(camera)
    assert values["frames received"] == "30"
    assert values["frames processed"] == "30"
    assert values["last processed stamp"] == "1.000000029"
    assert values["flows published"] == "29"
    assert values["frames dropped"] == "0"
    assert float(values["input rate (Hz)"]) == pytest.approx(30.0, rel=0.05)
    assert float(values["latency p50 (ms)"]) == pytest.approx(10.0 + 15 * 0.1, abs=0.11)
    assert values["callback time p50 (ms)"] == "1.00"


def test_waiting_and_silent_cameras_warn():
    health = NodeHealth("neuflow", {"front": "/front/image"},
                        DiagnosticThresholds(input_timeout_s=2.0))
    report = _camera(health, 0.0)
    assert report.level == WARN
    assert "waiting for images on /front/image" in report.message
    assert report.name == "neuflow: camera front"
    health.frame_received("front", 1.0, 0.001)
    assert _camera(health, 2.0).level in (OK, WARN)
    silent = _camera(health, 3.5)
    assert silent.level == WARN
    assert "no images" in silent.message


def test_malformed_frames_warn_while_recent_and_stay_counted():
    health = NodeHealth("neuflow", {"": "/image"}, DiagnosticThresholds(window_s=5.0))
    health.frame_malformed("", "data_length", "data length mismatch ...", now_s=1.0)
    health.frame_malformed("", "data_length", "data length mismatch ...", now_s=1.1)
    health.frame_malformed("", "zero_size", "size must be positive", now_s=1.2)
    report = _camera(health, 1.5)
    assert report.level == WARN
    assert "3 malformed" in report.message
    values = _values(report)
    assert values["malformed frames"] == "3"
    assert values["malformed: data_length"] == "2"
    assert values["malformed: zero_size"] == "1"
    for index in range(60):  # good frames afterwards, with flow
        now = 7.0 + index / 30.0
        health.frame_received("", now, 0.001)
        health.flow_published("", now, 0.01, 0.001)
    later = _camera(health, 9.0)
    assert later.level == OK
    assert _values(later)["malformed frames"] == "3"


def test_rejected_camera_info_is_counted_by_reason_and_warns_while_recent():
    health = NodeHealth("neuflow", {"": "/image"}, DiagnosticThresholds(window_s=5.0))
    for index in range(30):  # a healthy stream throughout
        now = 1.0 + index / 30.0
        health.frame_received("", now, 0.001)
        health.flow_published("", now, 0.01, 0.001)
    health.camera_info_rejected("", "size_mismatch", "it describes 1280x960 images", 1.5)
    health.camera_info_rejected("", "size_mismatch", "it describes 1280x960 images", 1.6)
    health.camera_info_rejected("", "non_finite", "K must be finite", 1.7)
    report = _camera(health, 2.0)
    assert report.level == WARN
    assert "3 camera_info message(s) rejected" in report.message and "K must be" in report.message
    values = _values(report)
    assert values["camera_info rejected"] == "3"
    assert values["camera_info rejected: size_mismatch"] == "2"
    assert values["camera_info rejected: non_finite"] == "1"
    for index in range(60):
        now = 7.0 + index / 30.0
        health.frame_received("", now, 0.001)
        health.flow_published("", now, 0.01, 0.001)
    later = _camera(health, 9.0)
    assert later.level == OK and _values(later)["camera_info rejected"] == "3"


def test_low_output_rate_warns_about_dropping():
    health = NodeHealth("neuflow", {"": "/image"}, DiagnosticThresholds(min_output_ratio=0.5))
    for index in range(90):
        now = index / 30.0
        health.frame_received("", now, 0.001)
        if index % 3 == 0:
            health.flow_published("", now, 0.05, 0.001)
        else:
            health.frames_dropped("", 1, now)
    report = _camera(health, 3.0)
    assert report.level == WARN
    assert "dropped" in report.message
    assert _values(report)["frames dropped"] == "60"


def test_worker_exceptions_are_errors_while_recent():
    health = NodeHealth("neuflow", {"": "/image"}, DiagnosticThresholds(window_s=5.0))
    health.engine_ready({"backend": "dis", "device": "cpu", "precision": "fp32"})
    health.worker_exception(1.0, "compute: boom")
    engine = health.report(2.0)[0]
    assert engine.level == ERROR
    assert "boom" in engine.message
    assert _values(engine)["worker exceptions"] == "1"
    assert health.report(7.0)[0].level == OK
    assert _values(health.report(7.0)[0])["worker exceptions"] == "1"


def test_an_engine_call_running_past_the_stall_timeout_is_an_error():
    """A hung GPU leaves the worker alive and silent: only the call's age shows it."""
    health = NodeHealth("neuflow", {"": "/image"}, DiagnosticThresholds(stall_timeout_s=10.0))
    health.engine_ready({"backend": "neuflow_v2", "device": "cuda", "precision": "fp16"})
    idle = health.report(100.0)[0]
    assert idle.level == OK
    assert _values(idle)["engine call running (s)"] == "no"
    busy = health.report(100.0, engine_call=EngineCall("compute", 95.0))[0]
    assert busy.level == OK
    assert _values(busy)["engine call running (s)"] == "5.0 (compute)"
    stalled = health.report(100.0, engine_call=EngineCall("compute", 85.0))[0]
    assert stalled.level == ERROR
    assert "stalled" in stalled.message and "15.0 s" in stalled.message
    # cuDNN autotuning and graph capture on a small GPU may take that long.
    warming_up = health.report(100.0, engine_call=EngineCall("warm-up", 85.0))[0]
    assert warming_up.level == OK
    assert _values(warming_up)["engine call running (s)"] == "15.0 (warm-up)"
    health.thresholds = DiagnosticThresholds(stall_timeout_s=0.0)
    assert health.report(100.0, engine_call=EngineCall("compute", 0.0))[0].level == OK


def test_failed_engine_is_an_error_and_gpu_memory_is_reported():
    health = NodeHealth("neuflow", {"": "/image"})
    health.engine_failed("checkpoint file not found: /x.pth")
    engine = health.report(1.0, gpu_memory_bytes=3 * 2**20)[0]
    assert engine.level == ERROR
    assert "/x.pth" in engine.message
    assert _values(engine)["GPU memory (MB)"] == "3.0"
    assert "GPU memory (MB)" not in _values(health.report(1.0)[0])


def test_resets_are_counted_per_reason():
    health = NodeHealth("neuflow", {"": "/image"})
    health.stream_reset("", "size_changed")
    health.stream_reset("", "size_changed")
    health.stream_reset("", "time_backwards")
    values = _values(_camera(health, 0.0))
    assert values["resets"] == "3"
    assert values["resets: size_changed"] == "2"
    assert values["resets: time_backwards"] == "1"


def test_warning_throttle_is_per_key_and_counts_suppressed():
    throttle = WarningThrottle(period_s=5.0)
    assert throttle.admit(("front", "data_length"), 0.0) == 0
    assert throttle.admit(("front", "data_length"), 1.0) is None
    assert throttle.admit(("front", "data_length"), 2.0) is None
    assert throttle.admit(("down", "data_length"), 2.0) == 0
    assert throttle.admit(("front", "zero_size"), 2.0) == 0
    assert throttle.admit(("front", "data_length"), 5.5) == 2


def test_a_failure_on_every_frame_logs_one_traceback_then_a_line_per_period():
    failures = FailureLog(WarningThrottle(period_s=5.0))
    lines = []
    for frame in range(30 * 60):  # a minute at 30 Hz
        now = frame / 30.0
        for stage, error in (("compute", ValueError("bad frame")), ("publish", KeyError("x"))):
            line = failures.line(stage, error, f"Traceback (most recent call last): {stage}", now)
            if line is not None:
                lines.append(line)
    assert len(lines) == 2 * 12  # per kind: one per 5 s
    tracebacks = [line for line in lines if "Traceback" in line]
    assert len(tracebacks) == 2 and all(line in lines[:2] for line in tracebacks)
    assert lines[2].endswith("(149 more since the last one)")
    assert "during compute, continuing: ValueError: bad frame" in lines[0]


def test_tracking_time_is_reported_apart_from_publish_time():
    health = NodeHealth("neuflow", {"": "/image"})
    for index in range(1, 21):
        now = index / 30.0
        health.frame_received("", now, 0.001)
        health.flow_published("", now, latency_s=0.02, publish_s=index * 1e-4,
                              tracking_s=index * 1e-3)
    values = _values(_camera(health, 1.0))
    # Nearest rank of 1..20: p50 is the 10th value, p95 the 19th.
    assert values["publish time p50 (ms)"] == "1.00"
    assert values["publish time p95 (ms)"] == "1.90"
    assert values["tracking time p50 (ms)"] == "10.00"
    assert values["tracking time p95 (ms)"] == "19.00"


def test_tracking_time_is_nan_without_tracking():
    health = NodeHealth("neuflow", {"": "/image"})
    health.frame_received("", 0.5, 0.001)
    health.flow_published("", 0.5, latency_s=0.02, publish_s=0.002)
    values = _values(_camera(health, 1.0))
    assert values["publish time p50 (ms)"] == "2.00"
    assert values["tracking time p50 (ms)"] == "nan"


def test_inactive_node_is_ok_and_says_so():
    health = NodeHealth("neuflow", {"": "/image"}, DiagnosticThresholds(input_timeout_s=2.0))
    health.engine_ready({"backend": "dis", "device": "cpu", "precision": "fp32"})
    health.frame_received("", 0.0, 0.001)
    health.engine_inactive()
    health.worker_stopped("worker thread ended")  # a deliberate stop is not a failure
    engine, camera = health.report(10.0)
    assert (engine.level, camera.level) == (OK, OK)
    assert "inactive" in engine.message
    assert "inactive" in camera.message
    assert _values(engine)["engine state"] == "inactive"
    health.engine_starting()
    assert _values(health.report(10.0)[0])["engine state"] == "starting"
