"""The atomic runner: one attempt of one run, all-or-nothing per unit of work.

attempt.py claims the run and supervises its units; units.py runs them (a global
job's one unit, a device job's unit per device) in threads of their own; endings.py
writes how the attempt ended (through the state machine, engine/lifecycle.py).
"""

from app.engine.runner.attempt import PUBLIC_SETTINGS, execute
from app.engine.runner.endings import Outcome
from app.engine.runner.units import (
    CANCELLED,
    SHUTDOWN,
    SUPERSEDED,
    TIMED_OUT,
    Control,
    UnitResult,
    UnitThreads,
    load_devices,
)

__all__ = [
    "CANCELLED",
    "PUBLIC_SETTINGS",
    "SHUTDOWN",
    "SUPERSEDED",
    "TIMED_OUT",
    "Control",
    "Outcome",
    "UnitResult",
    "UnitThreads",
    "execute",
    "load_devices",
]
