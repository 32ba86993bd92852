"""API tokens on the person's page: created once-shown, working on the API, revocable."""

from __future__ import annotations

import re

from app.extensions import db
from app.models import ApiToken
from tests.conftest import csrf_token


def _post(client, path, data):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, "/tokens")})


def test_a_viewer_creates_uses_and_revokes_a_token(app, client, auth):
    auth.create("val", "viewer-pw-123", "viewer")
    auth.login("val", "viewer-pw-123")
    assert 'id="no-tokens"' in client.get("/tokens").text
    made = _post(client, "/tokens", {"name": "grafana", "expires_days": "30"})
    assert made.status_code == 200
    token = re.search(r'id="new-token">(rk_[^<]+)<', made.text).group(1)
    assert client.get("/tokens").text.count(token) == 0  # shown once, never again
    api = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/v1/runs", headers=headers).status_code == 200
    assert api.post("/api/v1/jobs", json={}, headers=headers).status_code == 403  # a viewer
    with app.app_context():
        row = db.session.query(ApiToken).one()
        assert row.token_hash != token and token not in row.token_hash
        token_id = row.id
    _post(client, f"/tokens/{token_id}/revoke", {})
    assert api.get("/api/v1/runs", headers=headers).status_code == 401
    assert "revoked" in client.get("/tokens").text


def test_bad_expiry_is_a_field_error_and_others_tokens_are_off_limits(app, client, auth):
    from app.services import tokens, users

    with app.app_context():
        other = users.create_user("otto", "other-pw-123", "operator", actor="test")
        other_token_id = tokens.create_token(other, "theirs", actor="test")[0].id
    auth.create("val", "viewer-pw-123", "viewer")
    auth.login("val", "viewer-pw-123")
    bad = _post(client, "/tokens", {"name": "x", "expires_days": "forever"})
    assert bad.status_code == 422 and 'id="error-expires_days"' in bad.text
    assert "theirs" not in client.get("/tokens").text
    assert _post(client, f"/tokens/{other_token_id}/revoke", {}).status_code == 403
    assert _post(client, "/tokens/99999/revoke", {}).status_code == 404
