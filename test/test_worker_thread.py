"""WorkerThread: jobs in order on one thread, idle tracking, and survival of a failing job."""

import threading

from neuflow_ros.node.worker_thread import WorkerThread


def test_jobs_run_in_order_on_one_thread_and_idle_is_reported():
    thread = WorkerThread()
    release = threading.Event()
    ran = []
    thread.run(lambda: (release.wait(5.0), ran.append(("first", threading.get_ident()))))
    thread.run(lambda: ran.append(("second", threading.get_ident())))
    assert not thread.wait_idle(0.05)
    release.set()
    assert thread.wait_idle(5.0)
    assert [name for name, _ in ran] == ["first", "second"]
    assert ran[0][1] == ran[1][1] != threading.get_ident()
    thread.close()


def test_a_failing_job_does_not_end_the_thread(capsys):
    thread = WorkerThread()
    ran = threading.Event()

    def failing_job():
        raise RuntimeError("job failed")

    thread.run(failing_job)
    thread.run(ran.set)
    assert ran.wait(5.0)
    assert thread.wait_idle(5.0)
    assert "job failed" in capsys.readouterr().err
    thread.close()


def test_close_ends_the_thread_after_the_queued_jobs():
    thread = WorkerThread()
    ran = threading.Event()
    threads = []
    thread.run(lambda: threads.append(threading.current_thread()))
    thread.run(ran.set)
    thread.close()
    assert ran.wait(5.0)
    threads[0].join(5.0)
    assert not threads[0].is_alive()
