"""A time limit shortens the network timeouts of what runs inside it."""

from __future__ import annotations

import time

from app import deadlines


def test_no_limit_keeps_the_default() -> None:
    assert deadlines.seconds_left(120) == 120


def test_a_limit_shortens_and_an_inner_limit_cannot_extend_it() -> None:
    with deadlines.time_limit(10):
        assert 9 < deadlines.seconds_left(120) <= 10
        with deadlines.time_limit(60):
            assert deadlines.seconds_left(120) <= 10, "the outer limit stays"
        with deadlines.time_limit(2):
            assert deadlines.seconds_left(120) <= 2
    assert deadlines.seconds_left(120) == 120


def test_past_the_deadline_a_call_still_gets_a_moment() -> None:
    with deadlines.time_limit(0.01):
        time.sleep(0.02)
        assert deadlines.seconds_left(120) == deadlines.MINIMUM_SECONDS
