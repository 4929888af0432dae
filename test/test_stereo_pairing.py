"""StereoPairing alone: which stereo frames wait, pair, or go on unpaired."""

from dataclasses import dataclass

from neuflow_ros.node.stereo_pairing import StereoPairConfig, StereoPairing

CONFIG = StereoPairConfig("left", "right", max_stamp_difference_ns=0, partner_timeout_s=0.25)


@dataclass(frozen=True)
class Frame:
    camera: str
    stamp_ns: int


def test_a_frame_waits_for_its_partner_and_both_are_released_as_a_pair():
    pairing = StereoPairing(CONFIG)
    first = pairing.admit([Frame("left", 5)], now_s=0.0)
    assert first.frames == [] and first.pair is None
    second = pairing.admit([Frame("right", 5)], now_s=0.01)
    assert second.pair == (Frame("left", 5), Frame("right", 5))
    assert second.frames == [Frame("left", 5), Frame("right", 5)]
    assert second.unpaired == []


def test_other_cameras_pass_straight_through():
    step = StereoPairing(CONFIG).admit([Frame("down", 1), Frame("left", 1)], now_s=0.0)
    assert step.frames == [Frame("down", 1)]


def test_a_frame_whose_partner_never_comes_goes_on_alone_after_the_timeout():
    pairing = StereoPairing(CONFIG)
    pairing.admit([Frame("left", 5)], now_s=0.0)
    assert pairing.admit([], now_s=0.2).frames == []
    late = pairing.admit([], now_s=0.3)
    assert late.frames == late.unpaired == [Frame("left", 5)]
    assert late.pair is None


def test_a_newer_frame_of_the_same_side_releases_the_waiting_one_unpaired():
    pairing = StereoPairing(CONFIG)
    pairing.admit([Frame("right", 5)], now_s=0.0)
    step = pairing.admit([Frame("right", 6)], now_s=0.01)
    assert step.unpaired == [Frame("right", 5)]
    assert pairing.admit([Frame("left", 6)], now_s=0.02).pair == (Frame("left", 6),
                                                                   Frame("right", 6))
