"""StereoHealth: the counters and level of the stereo diagnostics status."""

from neuflow_ros.node.diagnostics import OK, WARN
from neuflow_ros.node.stereo_health import StereoHealth


def test_health_reports_pairs_matches_and_reasons():
    health = StereoHealth("n: stereo l/r", "l", "r")
    health.paired()
    health.matched(12, {"epipolar": 2, "consistency": 0}, now_s=1.0)
    health.unpaired("r", now_s=1.0)
    level, values = health.report(2.0).level, dict(health.report(2.0).values)
    assert level == WARN  # an unpaired frame in the last 5 s
    assert values["stereo pairs"] == "1"
    assert values["unpaired frames: r"] == "1" and values["unpaired frames: l"] == "0"
    assert values["matches per frame p50"] == "12.0"
    assert values["rejected: epipolar"] == "2"
    health.disabled("zero_baseline", "P[0,3] = 0", now_s=7.0)
    report = health.report(7.5)
    assert "zero_baseline" in report.message
    assert dict(report.values)["disabled: zero_baseline"] == "1"
    assert health.report(20.0).level == OK
