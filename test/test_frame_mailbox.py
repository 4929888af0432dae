"""FrameMailbox: latest-frame-wins and bounded keep-all hand-over, every loss counted."""

import threading
import time

import pytest

from neuflow_ros.node.frame_mailbox import FrameMailbox, MailboxClosedError


def test_latest_frame_wins_and_counts_the_replaced_frame():
    mailbox = FrameMailbox()
    assert mailbox.put("cam", 1).dropped == 0
    assert mailbox.put("cam", 2).dropped == 1
    assert mailbox.put("cam", 3).dropped == 1
    assert mailbox.take(timeout=0.0) == {"cam": 3}
    assert mailbox.take(timeout=0.0) == {}


def test_take_returns_one_frame_per_camera_for_batching():
    mailbox = FrameMailbox()
    mailbox.put("front", "f1")
    mailbox.put("down", "d1")
    assert mailbox.take(timeout=0.0) == {"front": "f1", "down": "d1"}


def test_keep_all_keeps_order_and_drops_nothing_below_the_bound():
    mailbox = FrameMailbox(keep_all=True, max_queued=5)
    outcomes = [mailbox.put("cam", frame) for frame in range(5)]
    assert sum(outcome.dropped for outcome in outcomes) == 0
    taken = [mailbox.take(timeout=0.0)["cam"] for _ in range(5)]
    assert taken == [0, 1, 2, 3, 4]


def test_keep_all_cameras_advance_together_in_order():
    mailbox = FrameMailbox(keep_all=True, max_queued=5)
    for index in range(2):
        mailbox.put("a", f"a{index}")
        mailbox.put("b", f"b{index}")
    assert mailbox.take(timeout=0.0) == {"a": "a0", "b": "b0"}
    assert mailbox.take(timeout=0.0) == {"a": "a1", "b": "b1"}


def test_full_keep_all_queue_waits_then_drops_the_oldest_frame():
    mailbox = FrameMailbox(keep_all=True, max_queued=2, block_timeout=0.1)
    mailbox.put("cam", 0)
    mailbox.put("cam", 1)
    started = time.monotonic()
    outcome = mailbox.put("cam", 2)
    waited = time.monotonic() - started
    assert outcome.dropped == 1
    assert 0.09 <= outcome.waited_s <= waited
    assert mailbox.pending() == 2
    assert [mailbox.take(timeout=0.0)["cam"] for _ in range(2)] == [1, 2]


def test_full_keep_all_queue_resumes_as_soon_as_the_worker_takes_a_frame():
    mailbox = FrameMailbox(keep_all=True, max_queued=1, block_timeout=5.0)
    mailbox.put("cam", 0)
    threading.Timer(0.05, lambda: mailbox.take(timeout=0.0)).start()
    outcome = mailbox.put("cam", 1)
    assert outcome.dropped == 0
    assert outcome.waited_s < 2.0
    assert mailbox.take(timeout=0.0) == {"cam": 1}


def test_switching_to_latest_wins_drops_and_reports_the_backlog():
    mailbox = FrameMailbox(keep_all=True, max_queued=10)
    for frame in range(4):
        mailbox.put("cam", frame)
    mailbox.put("other", "x")
    assert mailbox.set_keep_all(False) == {"cam": 3}
    assert mailbox.take(timeout=0.0) == {"cam": 3, "other": "x"}


def test_take_waits_for_a_frame_and_times_out_empty():
    mailbox = FrameMailbox()
    started = time.monotonic()
    assert mailbox.take(timeout=0.05) == {}
    assert time.monotonic() - started >= 0.04
    threading.Timer(0.05, lambda: mailbox.put("cam", "late")).start()
    assert mailbox.take(timeout=5.0) == {"cam": "late"}


def test_close_wakes_the_worker_and_refuses_frames():
    mailbox = FrameMailbox()
    mailbox.put("cam", 1)
    results = []
    mailbox.take(timeout=0.0)
    waiter = threading.Thread(target=lambda: results.append(mailbox.take(timeout=None)))
    waiter.start()
    time.sleep(0.05)
    assert mailbox.close() == 0
    waiter.join(2.0)
    assert results == [{}]
    with pytest.raises(MailboxClosedError):
        mailbox.put("cam", 2)


def test_invalid_bounds_are_rejected():
    with pytest.raises(ValueError, match="max_queued"):
        FrameMailbox(max_queued=0)
    with pytest.raises(ValueError, match="block_timeout"):
        FrameMailbox(block_timeout=-1.0)
