"""The schema: migrations and models agree; procrastinate's objects are present."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from app.extensions import db


def test_models_and_migrations_agree(app):
    from app import migrations_dir

    # env.py runs migrations when imported, so take its filter from the source alone.
    source = (migrations_dir() / "env.py").read_text()
    namespace: dict = {}
    start = source.index("PROCRASTINATE_PREFIX =")
    end = source.index("def get_engine")
    exec(source[start:end], namespace)
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"include_object": namespace["include_object"], "compare_type": True},
        )
        diff = compare_metadata(context, db.metadata)
    assert diff == [], f"models and migrations differ; run `rookery db migrate`: {diff}"


def test_procrastinate_schema_installed(app):
    with app.app_context():
        tables = set(inspect(db.engine).get_table_names())
        assert {
            "procrastinate_jobs",
            "procrastinate_workers",
            "procrastinate_events",
            "procrastinate_periodic_defers",
        } <= tables
        functions = db.session.execute(
            text("SELECT count(*) FROM pg_proc WHERE proname LIKE 'procrastinate%'")
        ).scalar()
        assert functions > 10


def test_downgrade_and_upgrade_round_trip(app):
    from flask_migrate import downgrade, upgrade

    with app.app_context():
        directory = app.extensions["migrate"].directory
        downgrade(directory=directory, revision="base")
        db.session.remove()
        leftover = [t for t in inspect(db.engine).get_table_names() if t != "alembic_version"]
        assert leftover == []
        upgrade(directory=directory)
        assert "procrastinate_jobs" in inspect(db.engine).get_table_names()
