"""Global units' reusable threads: reused when a unit ends, never when it was abandoned."""

from __future__ import annotations

import threading
import time

from app.engine.runner import UnitThreads


def _thread_name() -> str:
    return threading.current_thread().name


def _wait_idle(pool: UnitThreads, count: int) -> None:
    deadline = time.monotonic() + 5
    while pool.idle_count() != count:
        assert time.monotonic() < deadline, f"expected {count} idle thread(s)"
        time.sleep(0.005)


def test_a_thread_serves_one_unit_after_another() -> None:
    pool = UnitThreads("t-reuse")
    first, _ = pool.submit(_thread_name)
    assert first.result(5).startswith("t-reuse-")
    _wait_idle(pool, 1)
    second, _ = pool.submit(_thread_name)
    assert second.result(5) == first.result()
    _wait_idle(pool, 1)


def test_a_unit_that_raises_hands_back_the_error_and_the_thread() -> None:
    pool = UnitThreads("t-raise")

    def boom() -> None:
        raise ValueError("unit failed")

    future, _ = pool.submit(boom)
    assert isinstance(future.exception(5), ValueError)
    _wait_idle(pool, 1)


def test_an_abandoned_thread_never_comes_back() -> None:
    pool = UnitThreads("t-stuck")
    release = threading.Event()
    stuck, stuck_thread = pool.submit(release.wait)
    time.sleep(0.05)
    assert not stuck.done()
    pool.abandon(stuck_thread)  # what _run_global does on a timeout, cancel or shutdown

    # The next run does not wait for the stuck unit: another thread serves it.
    other, _ = pool.submit(_thread_name)
    assert other.result(5) != stuck_thread.thread.name
    _wait_idle(pool, 1)

    release.set()  # the stuck unit ends at last: its thread ends, not back to the pool
    assert stuck.result(5) is True
    stuck_thread.thread.join(5)
    assert not stuck_thread.thread.is_alive()
    assert pool.idle_count() == 1
    again, _ = pool.submit(_thread_name)
    assert again.result(5) == other.result()


def test_idle_threads_end_after_a_while() -> None:
    pool = UnitThreads("t-idle", idle_seconds=0.05)
    future, unit_thread = pool.submit(_thread_name)
    future.result(5)
    unit_thread.thread.join(5)
    assert not unit_thread.thread.is_alive()
    assert pool.idle_count() == 0
    assert pool.submit(_thread_name)[0].result(5) != future.result()
