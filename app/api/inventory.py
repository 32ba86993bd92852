"""Devices, tags, credentials (secrets write-only), imports, exports and config history."""

from __future__ import annotations

import logging

from flask import Response, current_app, request

from app import config_store, present
from app.api import paging
from app.api import schemas as s
from app.api.base import ID, actor, bp, requires, responses, spec
from app.errors import NotFound, ValidationError
from app.extensions import db
from app.models import Credential, Role, Tag
from app.services import config_search, credential_scope, host_keys, inventory
from app.services import credentials as credential_service

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- devices


@bp.get("/devices")
@spec.validate(query=s.DeviceQuery, resp=responses(HTTP_200=s.DeviceList), tags=["devices"])
@requires(Role.VIEWER)
def list_devices():
    """Devices by name, filtered by tag, text (name, host, platform, notes), state, platform,
    held credentials, backup health (stale, failing, never, fresh); each with its
    ``last_backup``."""
    q: s.DeviceQuery = request.context.query
    query = inventory.list_devices(
        tag=q.tag,
        search=q.search,
        enabled=q.enabled,
        platform=q.platform,
        held=q.held,
        backup=q.backup,
        stale_hours=q.stale_hours,
        sort=q.sort,
    )
    if q.cursor is not None:  # the devices page's keyset, behind an opaque cursor
        sort, after = paging.decode(q.cursor, [str, str])
        if sort != q.sort:
            raise ValidationError(
                f"This cursor is of the {sort!r} order; ask the next page with sort={sort}.",
                fields={"cursor": "Of another sort order."},
            )
        try:
            query = inventory.page_from(query, q.sort, after, back=False)
        except ValidationError:
            raise paging.bad_cursor() from None
    rows = list(db.session.scalars(query.limit(q.limit + 1)))
    next_cursor = None
    if len(rows) > q.limit:
        rows = rows[: q.limit]
        next_cursor = paging.encode([q.sort, inventory.device_cursor(rows[-1], q.sort)])
    return paging.envelope([present.device(d) for d in rows], next_cursor)


@bp.post("/devices")
@spec.validate(json=s.DeviceCreate, resp=responses(HTTP_201=s.DeviceOut), tags=["devices"])
@requires(Role.OPERATOR)
def create_device():
    """Add a device."""
    body: s.DeviceCreate = request.context.json
    fields = body.model_dump(exclude={"tags"})
    device = inventory.create_device(actor=actor(), tags=body.tags, **fields)
    return present.device(device), 201


@bp.get(f"/devices/<{ID}:device_id>")
@spec.validate(resp=responses(HTTP_200=s.DeviceOut), tags=["devices"])
@requires(Role.VIEWER)
def get_device(device_id: int):
    """One device."""
    return present.device(inventory.get_device(device_id))


@bp.patch(f"/devices/<{ID}:device_id>")
@spec.validate(json=s.DevicePatch, resp=responses(HTTP_200=s.DeviceOut), tags=["devices"])
@requires(Role.OPERATOR)
def update_device(device_id: int):
    """Change some fields of a device (``tags`` replaces its tags; a rename keeps history)."""
    body: s.DevicePatch = request.context.json
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    device = inventory.update_device(device_id, actor=actor(), **changes)
    return present.device(device)


@bp.post(f"/devices/<{ID}:device_id>/credential-hold/approve")
@spec.validate(resp=responses(HTTP_200=s.DeviceOut), tags=["devices"])
@requires(Role.ADMIN)
def approve_credentials(device_id: int):
    """Approve where a held device's credentials go (its host, port, platform, tags now):
    runs send them again. A device without a hold is answered as it is."""
    device = inventory.get_device(device_id)
    credential_scope.approve([device.id], actor=actor())
    return present.device(inventory.get_device(device_id))


@bp.delete(f"/devices/<{ID}:device_id>")
@spec.validate(resp=responses(HTTP_204=None), tags=["devices"])
@requires(Role.OPERATOR)
def delete_device(device_id: int):
    """Delete a device (refused while a run in flight targets it); its history stays."""
    inventory.delete_device(device_id, actor=actor())
    return "", 204


# ------------------------------------------------------------------------ host keys


@bp.post(f"/devices/<{ID}:device_id>/host-key/accept")
@spec.validate(json=s.HostKeyAccept, resp=responses(HTTP_200=s.DeviceOut), tags=["devices"])
@requires(Role.ADMIN)
def accept_host_key(device_id: int):
    """Pin the device's pending SSH host key (the one a refused server offered).

    Check its fingerprint first; give it as ``fingerprint`` and a key that became pending
    since is refused (409) instead of accepted. Audited with the old and new fingerprints.
    """
    body: s.HostKeyAccept = request.context.json
    fingerprint = body.fingerprint if body is not None else None
    device = host_keys.accept_pending(device_id, actor=actor(), fingerprint=fingerprint)
    return present.device(device)


@bp.put(f"/devices/<{ID}:device_id>/host-key")
@spec.validate(json=s.HostKeySet, resp=responses(HTTP_200=s.DeviceOut), tags=["devices"])
@requires(Role.ADMIN)
def set_host_key(device_id: int):
    """Pin this SSH host key for the device (``<type> <base64>``): approved, so trusted in
    strict mode too. Audited."""
    body: s.HostKeySet = request.context.json
    return present.device(host_keys.set_key(device_id, body.key, actor=actor()))


@bp.delete(f"/devices/<{ID}:device_id>/host-key")
@spec.validate(resp=responses(HTTP_204=None), tags=["devices"])
@requires(Role.ADMIN)
def forget_host_key(device_id: int):
    """Forget the device's pinned and pending host keys: the next connection learns the
    key again (in strict mode it is refused and its key becomes pending). Audited."""
    host_keys.forget(device_id, actor=actor())
    return "", 204


# ------------------------------------------------------------------- config history


def _store() -> config_store.GitConfigStore:
    return config_store.store_for(current_app)


def _read(name: str, commit: str) -> str | None:
    try:
        return _store().read(name, commit)
    except config_store.ConfigStoreError as exc:
        raise NotFound(str(exc)) from None


#: commits a history page looks past its cursor's position for it (new ones come first)
HISTORY_SLACK = 1000


@bp.get(f"/devices/<{ID}:device_id>/configs")
@spec.validate(query=s.Page, resp=responses(HTTP_200=s.ConfigVersionList), tags=["configs"])
@requires(Role.VIEWER)
def config_history(device_id: int):
    """The device's stored config versions, newest first."""
    q: s.Page = request.context.query
    device = inventory.get_device(device_id)
    # git, not a table: the cursor is the last commit shown with its position, the
    # page is read from git's log of the device's file from there on
    position, start = 0, 0
    if q.cursor is not None:
        position, sha = paging.decode(q.cursor, [int, str])
        if position < 1:
            raise paging.bad_cursor()
    versions = _store().history(device.name, limit=position + HISTORY_SLACK + q.limit + 1)
    if q.cursor is not None:
        shas = [v.sha for v in versions]
        if sha not in shas:
            raise paging.bad_cursor()
        start = shas.index(sha) + 1
    page = versions[start : start + q.limit]
    next_cursor = None
    if len(versions) > start + q.limit:
        next_cursor = paging.encode([start + q.limit, page[-1].sha])
    return paging.envelope([present.config_version(v) for v in page], next_cursor)


@bp.get(f"/devices/<{ID}:device_id>/configs/<string(maxlength=64):commit>")
@spec.validate(resp=responses(HTTP_200=None), tags=["configs"])
@requires(Role.VIEWER)
def config_text(device_id: int, commit: str):
    """The device's config at a version (``HEAD``: the latest), as text."""
    device = inventory.get_device(device_id)
    text = _read(device.name, commit)
    if text is None:
        raise NotFound(f"Device {device.name} has no config at {commit}.")
    return Response(text, mimetype="text/plain")


@bp.get(f"/devices/<{ID}:device_id>/diff")
@spec.validate(query=s.DiffQuery, resp=responses(HTTP_200=None), tags=["configs"])
@requires(Role.VIEWER)
def config_diff(device_id: int):
    """A unified diff of the device's config between two versions (empty when equal)."""
    q: s.DiffQuery = request.context.query
    device = inventory.get_device(device_id)
    for commit in (q.from_, q.to):
        _read(device.name, commit)  # a 404 for a version that does not exist
    try:
        diff = _store().unified_diff(device.name, q.from_, q.to)
    except config_store.ConfigStoreError as exc:
        raise NotFound(str(exc)) from None
    return Response(diff, mimetype="text/x-diff")


@bp.get("/configs/search")
@spec.validate(
    query=s.ConfigSearchQuery, resp=responses(HTTP_200=s.ConfigSearchOut), tags=["configs"]
)
@requires(Role.VIEWER)
def search_configs():
    """Every device whose latest config has a line matching ``q`` (plain text or, with
    ``regex``, a regular expression), each matching line with ``context`` lines."""
    q: s.ConfigSearchQuery = request.context.query
    found = config_search.search(
        q.q, regex=q.regex, case=q.case, context=q.context, tag=q.tag, platform=q.platform
    )
    return config_search.as_dict(found)


# ------------------------------------------------------------------ import, export


@bp.post("/imports")
@spec.validate(
    json=s.ImportIn,
    resp=responses(HTTP_200=s.ImportOut, HTTP_422=s.ImportFailed),
    tags=["devices"],
)
@requires(Role.OPERATOR)
def import_devices():
    """Upsert devices from CSV or a Nornir inventory; any bad row and nothing is written
    (unless ``partial``): every bad row is reported with its line."""
    body: s.ImportIn = request.context.json
    if body.format == "csv":
        if body.csv is None:
            raise ValidationError("Give the CSV text in csv.", fields={"csv": "Required."})
        report = inventory.import_csv(body.csv, partial=body.partial, actor=actor())
    else:
        if body.hosts is None:
            raise ValidationError("Give hosts.yaml's text in hosts.", fields={"hosts": "Required."})
        report = inventory.import_nornir(
            body.hosts, body.groups, body.defaults, partial=body.partial, actor=actor()
        )
    errors = [{"line": e.line, "name": e.name, "message": e.message} for e in report.errors]
    if errors and not body.partial:
        return {
            "error": "ValidationError",
            "message": f"Nothing imported: {len(errors)} bad row(s). "
            + "; ".join(str(e) for e in report.errors[:5]),
            "fields": {f"line {e.line}": e.message for e in report.errors[:100]},
            "errors": errors,
        }, 422
    return {
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "errors": errors,
    }


@bp.get("/exports")
@spec.validate(query=s.ExportQuery, resp=responses(HTTP_200=s.ExportOut), tags=["devices"])
@requires(Role.VIEWER)
def export_devices():
    """Every device as files the import takes back: devices.csv, or hosts.yaml + groups.yaml."""
    q: s.ExportQuery = request.context.query
    if q.format == "csv":
        return {"format": "csv", "files": {"devices.csv": inventory.export_csv()}}
    return {"format": "nornir", "files": inventory.export_nornir()}


# ------------------------------------------------------------------------------ tags


@bp.get("/tags")
@spec.validate(query=s.Page, resp=responses(HTTP_200=s.TagList), tags=["devices"])
@requires(Role.VIEWER)
def list_tags():
    """Tags by name, each with the number of devices carrying it."""
    q: s.Page = request.context.query
    rows, next_cursor = paging.page_query(
        inventory.list_tags(),
        [paging.Key(Tag.name)],
        cursor=q.cursor,
        limit=q.limit,
        values=lambda row: (row[0].name,),
    )
    items = [
        {"id": t.id, "name": t.name, "description": t.description or "", "device_count": n}
        for t, n in rows
    ]
    return paging.envelope(items, next_cursor)


@bp.patch(f"/tags/<{ID}:tag_id>")
@spec.validate(json=s.TagPatch, resp=responses(HTTP_200=s.TagOut), tags=["devices"])
@requires(Role.OPERATOR)
def update_tag(tag_id: int):
    """Rename a tag or change its description; devices, jobs and credentials follow."""
    body: s.TagPatch = request.context.json
    tag = inventory.update_tag(tag_id, actor=actor(), name=body.name, description=body.description)
    count = next((n for t, n in db.session.execute(inventory.list_tags()) if t.id == tag.id), 0)
    return {"id": tag.id, "name": tag.name, "description": tag.description, "device_count": count}


@bp.delete(f"/tags/<{ID}:tag_id>")
@spec.validate(query=s.TagDeleteQuery, resp=responses(HTTP_204=None), tags=["devices"])
@requires(Role.OPERATOR)
def delete_tag(tag_id: int):
    """Delete a tag (devices lose it); refused while jobs or credentials use it, unless force."""
    q: s.TagDeleteQuery = request.context.query
    inventory.delete_tag(tag_id, actor=actor(), force=q.force)
    return "", 204


# ----------------------------------------------------------------------- credentials


@bp.get("/credentials")
@spec.validate(
    query=s.CredentialQuery, resp=responses(HTTP_200=s.CredentialList), tags=["credentials"]
)
@requires(Role.VIEWER)
def list_credentials():
    """Credentials in the order they are tried; never a password or secret."""
    q: s.CredentialQuery = request.context.query
    rows, next_cursor = paging.page_query(
        credential_service.list_credentials(tag=q.tag),
        [paging.Key(Credential.priority), paging.Key(Credential.name)],
        cursor=q.cursor,
        limit=q.limit,
        values=lambda c: (c.priority, c.name),
    )
    return paging.envelope([credential_service.public_view(c) for c in rows], next_cursor)


@bp.post("/credentials")
@spec.validate(
    json=s.CredentialCreate, resp=responses(HTTP_201=s.CredentialOut), tags=["credentials"]
)
@requires(Role.ADMIN)
def create_credential():
    """Save a credential; its password and secret are encrypted and never shown again."""
    body: s.CredentialCreate = request.context.json
    credential = credential_service.create_credential(
        body.name,
        body.username,
        body.password,
        enable_secret=body.secret or None,
        priority=body.priority,
        tags=body.tags,
        actor=actor(),
    )
    return credential_service.public_view(credential), 201


@bp.get(f"/credentials/<{ID}:credential_id>")
@spec.validate(resp=responses(HTTP_200=s.CredentialOut), tags=["credentials"])
@requires(Role.VIEWER)
def get_credential(credential_id: int):
    """One credential, without its secrets."""
    return credential_service.public_view(credential_service.get_credential(credential_id))


@bp.patch(f"/credentials/<{ID}:credential_id>")
@spec.validate(
    json=s.CredentialPatch, resp=responses(HTTP_200=s.CredentialOut), tags=["credentials"]
)
@requires(Role.ADMIN)
def update_credential(credential_id: int):
    """Change a credential: absent fields keep their value, an empty ``secret`` clears it."""
    body: s.CredentialPatch = request.context.json
    credential = credential_service.update_credential(
        credential_id,
        actor=actor(),
        name=body.name,
        username=body.username,
        password=body.password,
        enable_secret=body.secret,
        priority=body.priority,
        tags=body.tags,
    )
    return credential_service.public_view(credential)


@bp.delete(f"/credentials/<{ID}:credential_id>")
@spec.validate(resp=responses(HTTP_204=None), tags=["credentials"])
@requires(Role.ADMIN)
def delete_credential(credential_id: int):
    """Delete a credential (refused while jobs name it)."""
    credential_service.delete_credential(credential_id, actor=actor())
    return "", 204
