"""The warm-up plan: which engine calls prepare every signature a camera setup submits."""

from __future__ import annotations

import pytest

from neuflow_ros.flow.warm_up_plan import WarmUpCall, warm_up_calls


def backbone_batches(calls: list[WarmUpCall]) -> set[int]:
    """Images through the backbone per call: the new frame of each pair, and the first
    frame too where a stream starts."""
    return {call.cameras + call.starting for call in calls}


def test_plan_meets_every_backbone_batch_and_backward_setting_per_camera_count():
    calls = warm_up_calls(3, (False, True), repeats=1)
    assert backbone_batches(calls) == set(range(1, 7))
    for count in (1, 2, 3):
        of_count = [call for call in calls if call.cameras == count]
        steady = {call.backward for call in of_count if call.starting == 0}
        assert steady == {False, True}
        assert {call.starting for call in of_count} == set(range(count + 1))


def test_plan_repeats_each_call_until_a_graph_would_be_captured():
    calls = warm_up_calls(1, (True,), repeats=3)
    assert calls == [WarmUpCall(1, True, starting=1)] * 3 + [WarmUpCall(1, True, starting=0)] * 3


@pytest.mark.parametrize(("cameras", "settings", "repeats"), [(0, (False,), 1), (1, (), 1),
                                                             (1, (False,), 0)])
def test_plan_rejects_empty_requests(cameras, settings, repeats):
    with pytest.raises(ValueError, match="need cameras"):
        warm_up_calls(cameras, settings, repeats)
