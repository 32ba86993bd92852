"""/health reports the database, the schema and live workers."""

from __future__ import annotations

from sqlalchemy import text

from app.extensions import db


def test_health_ok_without_login(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["database"] == {"reachable": True}
    assert body["migrations"]["up_to_date"] is True
    assert body["migrations"]["current"] == body["migrations"]["heads"]
    assert body["workers"]["alive"] == 0


def test_health_counts_workers_by_heartbeat(client, app):
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now()), "
                "(now() - interval '5 minutes')"
            )
        )
        db.session.commit()
    assert client.get("/health").get_json()["workers"]["alive"] == 1


def test_health_503_when_schema_is_behind(client, app):
    with app.app_context():
        db.session.execute(text("UPDATE alembic_version SET version_num = '0001_procrastinate'"))
        db.session.commit()
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json()["migrations"]["up_to_date"] is False


def test_health_503_when_database_unreachable(app_factory):
    app = app_factory({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "TESTING": True})
    response = app.test_client().get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "error"
    assert body["database"]["reachable"] is False
    assert body["database"]["error"]


def test_health_reports_an_empty_queue(client):
    body = client.get("/health").get_json()
    assert body["queue"] == {"depth": 0, "lag_seconds": 0.0}
    assert body["workers"] == {"alive": 0, "concurrency": 0, "workers": []}


def test_health_reports_queue_depth_and_lag_without_failing(client, app):
    with app.app_context():
        # two due entries (the older deferred 10 minutes ago), one not yet due, one running
        db.session.execute(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, priority, scheduled_at)"
                " VALUES ('default', 't', 5, NULL), ('default', 't', 10, NULL),"
                " ('default', 't', 5, now() + interval '1 hour')"
            )
        )
        db.session.execute(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, status)"
                " VALUES ('default', 't', 'doing')"
            )
        )
        db.session.execute(
            text(
                "UPDATE procrastinate_events SET at = now() - interval '10 minutes'"
                " WHERE type = 'deferred' AND job_id = (SELECT min(id) FROM procrastinate_jobs)"
            )
        )
        db.session.execute(
            text("INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now())")
        )
        db.session.commit()
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"  # a lagging queue is reported, not an error
    assert body["queue"]["depth"] == 2
    assert 590 <= body["queue"]["lag_seconds"] <= 900
    assert body["workers"]["alive"] == 1
    assert set(body["workers"]["workers"][0]) == {
        "id",
        "last_heartbeat",
        "name",
        "host",
        "pid",
        "concurrency",
    }


def test_health_without_database_has_no_queue(app_factory):
    app = app_factory({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "TESTING": True})
    body = app.test_client().get("/health").get_json()
    assert body["queue"] is None
    assert body["workers"] is None
