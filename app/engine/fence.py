"""The fence a unit's thread carries: which run and attempt its writes belong to.

The runner sets it around each unit; what a job module writes through the job API
(log lines, progress) checks it in the same statement: once the attempt is no longer
the run's current one (the reconciler gave the run to another attempt, or ended it),
the write matches nothing and ``AttemptSuperseded`` stops the unit. Outside a unit
(a script, a test) there is no fence and nothing is checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class AttemptSuperseded(Exception):
    """This attempt of the run is no longer current: stop, write nothing more."""

    def __init__(self, run_id: int, attempt: int) -> None:
        super().__init__(f"run {run_id}: attempt {attempt} is no longer current")
        self.run_id = run_id
        self.attempt = attempt


_current: ContextVar[tuple[int, int] | None] = ContextVar("rookery_fence", default=None)


def current() -> tuple[int, int] | None:
    """(run id, attempt) of the unit running in this thread, or None."""
    return _current.get()


def attempt_for(run_id: int) -> int | None:
    """The fenced attempt when this thread runs a unit of ``run_id``, else None."""
    held = _current.get()
    return held[1] if held is not None and held[0] == run_id else None


@contextmanager
def holding(run_id: int, attempt: int) -> Iterator[None]:
    token = _current.set((run_id, attempt))
    try:
        yield
    finally:
        _current.reset(token)
