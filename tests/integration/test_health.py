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
