"""A time limit for what runs in this context, such as a run's finalize.

The runner sets one around a job's ``finalize`` so that ending a run (after a timeout
too) stays bounded: network calls made inside it (the config store's git fetch and
push) shorten their own timeouts to what is left, and a push cut short is a warning
retried later, not a lost backup.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("rookery_deadline", default=None)

#: the least a network call is given, even past the deadline (a fetch needs a moment)
MINIMUM_SECONDS = 1.0


def seconds_left(default: float) -> float:
    """``default``, or less when a time limit applies here (never below a second)."""
    deadline = _deadline.get()
    if deadline is None:
        return default
    return max(MINIMUM_SECONDS, min(default, deadline - time.monotonic()))


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Bound what runs in the block to ``seconds`` (an outer, shorter limit stays)."""
    outer = _deadline.get()
    deadline = time.monotonic() + seconds
    token = _deadline.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _deadline.reset(token)
