"""The one-statement start_run writes every JobRun column the ORM would default."""

from __future__ import annotations

from procrastinate import manager

from app.models import JobRun
from app.services import runs


def test_every_defaulted_column_is_written():
    defaulted = {c.name for c in JobRun.__table__.c if c.default is not None}
    assert defaulted <= set(runs.DIRECT_COLUMNS)


def test_direct_columns_exist():
    assert set(runs.DIRECT_COLUMNS) <= {c.name for c in JobRun.__table__.c}


def test_queueing_lock_constraint_is_procrastinates():
    assert runs.QUEUEING_LOCK_CONSTRAINT == manager.QUEUEING_LOCK_CONSTRAINT
