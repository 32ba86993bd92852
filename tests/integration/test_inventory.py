"""Inventory on a real PostgreSQL: devices, tags, imports, exports, deletes and renames."""

from __future__ import annotations

import sys
import types
import uuid
from pathlib import Path

import pytest
from psycopg import sql
from sqlalchemy import func, select

import app as app_package
from app import platforms
from app.errors import Conflict, ValidationError
from app.extensions import db
from app.models import AuditEntry, Device, DeviceResult, Tag
from app.services import inventory, runs
from tests.conftest import _execute, _swap_db, make_config
from tests.integration.helpers import drain, make_job, reload

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "nornir"


def add(name: str = "r1", host: str = "10.0.0.1", tags=("core",), **fields) -> Device:
    fields.setdefault("platform", "cisco_ios")
    return inventory.create_device(name=name, host=host, tags=list(tags), actor="test", **fields)


def devices() -> dict[str, tuple]:
    """Every device as (host, port, platform, driver, enabled, notes, tags), by name."""
    db.session.expire_all()
    return {
        d.name: (d.host, d.port, d.platform, d.driver, d.enabled, d.notes, [t.name for t in d.tags])
        for d in db.session.scalars(inventory.list_devices())
    }


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


# ------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "host",
    ["10.0.0.1", "2001:db8::1", "::1", "r1", "r1.example.net", "core_sw-1.dc1.example.", "a" * 63],
)
def test_hosts_accepted(host):
    assert inventory.is_host(host)


@pytest.mark.parametrize(
    "host", ["", "10.0.0.256", "-r1", "r1-", "has space", "a" * 64, "r1..example", "[::1]", "1.2"]
)
def test_hosts_refused(host):
    assert not inventory.is_host(host)


def test_create_device_with_defaults_tags_and_audit(ctx):
    device = add(tags=["edge", "core", "edge"])
    assert (device.port, device.driver, device.enabled, device.notes) == (22, "netmiko", True, "")
    assert [t.name for t in device.tags] == ["core", "edge"]
    entry = db.session.scalars(select(AuditEntry)).one()
    assert (entry.action, entry.object_type, entry.object_id) == (
        "create",
        "device",
        str(device.id),
    )
    assert entry.after["tags"] == ["core", "edge"] and entry.after["host"] == "10.0.0.1"


def test_validation_reports_every_field_at_once(ctx):
    with pytest.raises(ValidationError) as caught:
        inventory.create_device(
            name="bad name",
            host="not a host!",
            port="70000",
            platform="foo",
            driver="scrapli",
            enabled="maybe",
            actor="test",
        )
    fields = caught.value.fields
    assert set(fields) == {"name", "host", "port", "platform", "driver", "enabled"}
    assert fields["platform"] == (
        f"Unknown platform 'foo'. Valid: {', '.join(platforms.PROFILED)}, or another of "
        f"netmiko's {len(inventory.netmiko_platforms())} device types (the Import devices page "
        "lists them all)."
    )
    assert fields["port"] == "Port must be a whole number from 1 to 65535."
    assert fields["driver"] == "Unknown driver 'scrapli'; known: netmiko."
    assert "no spaces" in fields["name"]
    assert "Unknown platform 'foo'" in caught.value.message
    assert count(Device) == 0 and count(AuditEntry) == 0


def test_required_fields_and_name_characters(ctx):
    with pytest.raises(ValidationError) as caught:
        inventory.create_device(name="", host="", platform="", actor="test")
    assert set(caught.value.fields) == {"name", "host", "platform"}
    assert add(name="dc1/r1:core_a-b.c").name == "dc1/r1:core_a-b.c"
    with pytest.raises(ValidationError, match="no spaces"):
        add(name="x" * 129)


def test_every_netmiko_device_type_is_a_platform(ctx):
    from netmiko.ssh_dispatcher import CLASS_MAPPER

    assert {"cisco_ios", "arista_eos", "juniper_junos", "cisco_xr"} <= inventory.netmiko_platforms()
    assert inventory.netmiko_platforms() == set(CLASS_MAPPER) - {"autodetect"}
    assert add(platform="Arista_EOS").platform == "arista_eos"


def test_duplicate_name_is_a_conflict(ctx):
    add()
    with pytest.raises(Conflict, match="A device named 'r1' already exists"):
        add(host="10.0.0.2")
    assert count(Device) == 1


def test_update_device_records_before_and_after(ctx):
    device = add()
    inventory.update_device(
        device.id, host="r1.example.net", port="2222", tags=["core", "dc1"], actor="test"
    )
    assert devices()["r1"] == (
        "r1.example.net",
        2222,
        "cisco_ios",
        "netmiko",
        True,
        "",
        ["core", "dc1"],
    )
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "update")).one()
    assert entry.before["host"] == "10.0.0.1" and entry.after["host"] == "r1.example.net"
    assert entry.before["tags"] == ["core"] and entry.after["tags"] == ["core", "dc1"]
    with pytest.raises(ValidationError, match="Port must be"):
        inventory.update_device(device.id, port=0, actor="test")
    with pytest.raises(ValidationError, match="Unknown device field 'colour'"):
        inventory.update_device(device.id, colour="red", actor="test")
    assert devices()["r1"][1] == 2222


def test_list_devices_filters_and_tag_counts(ctx):
    add("r1", tags=["core"])
    add("r2", host="r2.example.net", tags=["core", "edge"], notes="rack 100%")
    add("sw1", host="10.0.9.9", tags=[], platform="arista_eos", enabled=False)

    def names(**filters):
        return [d.name for d in db.session.scalars(inventory.list_devices(**filters))]

    assert names() == ["r1", "r2", "sw1"]
    assert names(tag="core") == ["r1", "r2"]
    assert names(search="EXAMPLE") == ["r2"]
    assert names(search="100%") == ["r2"]
    assert names(search="r_") == []  # LIKE wildcards are taken literally
    assert names(enabled=False) == ["sw1"]
    assert names(platform="arista_eos") == ["sw1"]
    counts = {tag.name: n for tag, n in db.session.execute(inventory.list_tags()).all()}
    assert counts == {"core": 2, "edge": 1}
    assert inventory.get_by_name("r2").host == "r2.example.net"


def test_tags_rename_and_delete(ctx):
    add("r1", tags=["core"])
    core = inventory.get_tag_by_name("core")
    inventory.rename_tag(core.id, "backbone", actor="test")
    assert devices()["r1"][-1] == ["backbone"]
    inventory.ensure_tags(["other"])
    db.session.commit()
    with pytest.raises(Conflict, match="A tag named 'other' already exists"):
        inventory.rename_tag(core.id, "other", actor="test")
    make_job(name="visit", job_type="devjob", target_tags=["backbone"])
    with pytest.raises(Conflict, match="Tag backbone is used by job visit; remove it"):
        inventory.delete_tag(core.id, actor="test")
    inventory.delete_tag(core.id, actor="test", force=True)
    assert devices()["r1"][-1] == []
    assert [t.name for t in db.session.scalars(select(Tag))] == ["other"]


# ------------------------------------------------------------------------ rename


@pytest.fixture
def fake_store(monkeypatch):
    """A stand-in for app.config_store: records renames, or refuses them."""
    calls: list[tuple[str, str]] = []
    module = types.ModuleType("app.config_store")

    class ConfigStoreError(Exception):
        pass

    class Store:
        refuse = False

        def rename(self, old, new, *, lock=None):
            with lock:
                if Store.refuse:
                    raise ConfigStoreError("configs/r9 already exists")
                calls.append((old, new))
            return "abc123"

    class Lock:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    module.ConfigStoreError = ConfigStoreError
    module.store_for = lambda app: Store()
    module.advisory_lock = lambda session: Lock()
    monkeypatch.setitem(sys.modules, "app.config_store", module)
    monkeypatch.setattr(app_package, "config_store", module, raising=False)
    module.calls = calls
    module.Store = Store
    return module


def test_rename_moves_the_config_file(ctx, fake_store):
    device = add()
    inventory.update_device(device.id, name="r1-new", actor="test")
    assert fake_store.calls == [("r1", "r1-new")]
    assert list(devices()) == ["r1-new"]
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "update")).one()
    assert entry.summary == "changed device r1-new (renamed from r1)"
    inventory.update_device(device.id, host="10.0.0.5", actor="test")
    assert fake_store.calls == [("r1", "r1-new")]  # no rename, no store call


def test_rename_refused_by_the_store_changes_nothing(ctx, fake_store):
    device = add()
    fake_store.Store.refuse = True
    with pytest.raises(Conflict, match=r"Device r1 was not renamed: .*configs/r9 already exists"):
        inventory.update_device(device.id, name="r9", host="10.9.9.9", actor="test")
    assert devices()["r1"][0] == "10.0.0.1"
    assert count(AuditEntry) == 1  # the create only


def test_rename_onto_a_taken_name_never_reaches_the_store(ctx, fake_store):
    add("r1")
    r2 = add("r2", host="10.0.0.2")
    with pytest.raises(Conflict, match="A device named 'r1' already exists"):
        inventory.update_device(r2.id, name="r1", actor="test")
    assert fake_store.calls == []


def test_rename_with_the_real_config_store(ctx):
    from app import config_store

    store = config_store.store_for(ctx)
    store.commit_run(run_id=1, job_name="backup", configs={"r1": "hostname r1\n", "r9": "x\n"})
    device = add("r1")
    inventory.update_device(device.id, name="r1-renamed", actor="test")
    assert list(devices()) == ["r1-renamed"]
    assert store.read("r1-renamed") == "hostname r1\n" and store.read("r1") is None
    assert len(store.history("r1-renamed")) == 2  # the backup and the move
    # The store refuses to overwrite another device's history: nothing changes.
    with pytest.raises(Conflict, match="'r9' already has stored configs"):
        inventory.update_device(device.id, name="r9", actor="test")
    assert list(devices()) == ["r1-renamed"]
    assert store.read("r1-renamed") == "hostname r1\n"
    # Deleting the device keeps its history readable.
    inventory.delete_device(device.id, actor="test")
    assert store.read("r1-renamed") == "hostname r1\n"


# ------------------------------------------------------------------------ delete


def test_delete_refused_while_a_run_targets_the_device_by_tag(ctx):
    device = add("r1", tags=["lab"])
    job = make_job(name="visit", job_type="devjob", target_tags=["lab"])
    run = runs.start_run(job, triggered_by="test")
    with pytest.raises(Conflict) as caught:
        inventory.delete_device(device.id, actor="test")
    assert str(caught.value) == f"Device r1 is targeted by run #{run.id} (queued); cancel it first."
    runs.cancel_run(run.id, actor="test")
    inventory.delete_device(device.id, actor="test")
    assert count(Device) == 0
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "delete")).one()
    assert entry.before["name"] == "r1" and entry.after is None


def test_delete_checks_device_targets_and_restricted_runs(ctx):
    r1 = add("r1", tags=[])
    r2 = add("r2", host="10.0.0.2", tags=[])
    job = make_job(name="by-id", job_type="devjob", target_device_ids=[r1.id], no_overlap=False)
    whole = runs.start_run(job, triggered_by="test")
    only_r2 = runs.start_run(job, triggered_by="test", device_ids=[r2.id])
    with pytest.raises(Conflict, match=f"run #{whole.id} \\(queued\\)"):
        inventory.delete_device(r1.id, actor="test")
    with pytest.raises(Conflict, match=f"run #{only_r2.id} \\(queued\\)"):
        inventory.delete_device(r2.id, actor="test")
    runs.cancel_run(only_r2.id, actor="test")
    inventory.delete_device(r2.id, actor="test")  # the whole-job run targets r1 alone
    assert [r.id for r in inventory.active_runs_targeting(r1)] == [whole.id]
    runs.cancel_run(whole.id, actor="test")
    inventory.delete_device(r1.id, actor="test")


def test_deleted_device_keeps_its_results_readable(ctx):
    device = add("r1", tags=["lab"])
    run = runs.start_run(
        make_job(name="visit", job_type="devjob", target_tags=["lab"]), triggered_by="test"
    )
    drain(ctx)
    assert reload(run.id).status == "COMPLETED_SUCCESS"
    inventory.delete_device(device.id, actor="test")
    result = db.session.scalars(select(DeviceResult)).one()
    assert (result.device_id, result.device_name, result.status) == (None, "r1", "success")
    assert reload(run.id).status == "COMPLETED_SUCCESS"


# ------------------------------------------------------------------------ CSV import

GOOD_AND_BAD_CSV = (
    "name,host,port,platform,tags\n"  # line 1
    "r1,10.0.0.1,22,cisco_ios,core;dc1\n"  # 2
    "r2,10.0.0.2,notaport,cisco_ios,core\n"  # 3: bad port
    "\n"  # 4: blank, skipped
    "r3,10.0.0.3,22,foo_os,edge\n"  # 5: unknown platform
    "r1,10.0.0.9,22,cisco_ios,\n"  # 6: duplicate name
    'r4,,22,cisco_ios,"edge|dc1"\n'  # 7: missing host
    "r5,r5.example.net,,arista_eos,edge|dc1\n"  # 8
)


def test_csv_with_bad_rows_imports_nothing_and_names_each_line(ctx):
    report = inventory.import_csv(GOOD_AND_BAD_CSV, actor="test")
    assert (report.created, report.updated, report.ok) == (0, 0, False)
    assert [(e.line, e.name) for e in report.errors] == [
        (3, "r2"),
        (5, "r3"),
        (6, "r1"),
        (7, "r4"),
    ]
    messages = [e.message for e in report.errors]
    assert messages[0] == "Port must be a whole number from 1 to 65535."
    assert messages[1].startswith(f"Unknown platform 'foo_os'. Valid: {platforms.PROFILED[0]}, ")
    assert messages[2] == "Duplicate name 'r1' (first on line 2)."
    assert messages[3].startswith("A host is required")
    assert str(report.errors[0]) == "line 3 (r2): Port must be a whole number from 1 to 65535."
    assert count(Device) == 0 and count(Tag) == 0 and count(AuditEntry) == 0


def test_csv_partial_imports_only_the_good_rows(ctx):
    report = inventory.import_csv(GOOD_AND_BAD_CSV, partial=True, actor="test")
    assert (report.created, report.updated, len(report.errors)) == (2, 0, 4)
    assert devices() == {
        "r1": ("10.0.0.1", 22, "cisco_ios", "netmiko", True, "", ["core", "dc1"]),
        "r5": ("r5.example.net", 22, "arista_eos", "netmiko", True, "", ["dc1", "edge"]),
    }
    summary = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "import")).one()
    assert "2 created" in summary.summary and "4 bad row(s) skipped" in summary.summary


def test_csv_upsert_updates_existing_devices_and_keeps_missing_columns(ctx):
    add("r1", tags=["old"], notes="keep me", enabled=False)
    report = inventory.import_csv(
        "name,host,platform,tags\nr1,r1.example.net,cisco_xr,new\nr2,10.0.0.2,cisco_ios,\n",
        actor="test",
    )
    assert (report.created, report.updated, report.errors) == (1, 1, [])
    assert devices() == {
        "r1": ("r1.example.net", 22, "cisco_xr", "netmiko", False, "keep me", ["new"]),
        "r2": ("10.0.0.2", 22, "cisco_ios", "netmiko", True, "", []),
    }
    again = inventory.import_csv(
        "name,host,platform,tags\nr1,r1.example.net,cisco_xr,new\n", actor="test"
    )
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1)
    update = db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "update", AuditEntry.object_type == "device")
    ).one()
    assert update.before["host"] == "10.0.0.1" and update.after["host"] == "r1.example.net"


def test_csv_bom_crlf_quoted_newlines_and_bytes(ctx):
    data = (
        "\ufeffName,Host,Platform,Notes,Enabled\r\n"
        'r1,10.0.0.1,cisco_ios,"two\r\nlines",no\r\n'
        "r2,10.0.0.2,cisco_ios,,maybe\r\n"
    )
    report = inventory.import_csv(data.encode(), actor="test")
    assert [(e.line, e.name, e.message) for e in report.errors] == [
        (4, "r2", "Enabled must be true or false.")
    ]
    report = inventory.import_csv(data.replace("maybe", "yes"), actor="test")
    assert report.created == 2
    assert devices()["r1"][4:6] == (False, "two\r\nlines")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            "name,host,platform,colour,owner\nr1,a,cisco_ios,x,y\n",
            "Unknown column(s): 'colour', 'owner'",
        ),
        ("name,platform\nr1,cisco_ios\n", "Missing column(s): host."),
        ("name,host,host,platform\nr1,a,b,cisco_ios\n", "Column(s) given twice: host."),
        ("\r\n\n", "The file is empty"),
    ],
)
def test_csv_header_problems(ctx, data, message):
    report = inventory.import_csv(data, partial=True, actor="test")
    assert len(report.errors) == 1 and report.errors[0].line == 1
    assert message in report.errors[0].message
    assert count(Device) == 0


def test_csv_row_with_too_many_values(ctx):
    report = inventory.import_csv(
        "name,host,platform\nr1,10.0.0.1,cisco_ios,extra\nr2,10.0.0.2,cisco_ios,\n", actor="test"
    )
    assert [(e.line, e.message) for e in report.errors] == [
        (2, "The row has 4 values; the header has 3 columns.")
    ]


# ---------------------------------------------------------------------- Nornir import


def nornir_files() -> tuple[str, str, str]:
    return tuple((FIXTURES / f).read_text() for f in ("hosts.yaml", "groups.yaml", "defaults.yaml"))


def test_nornir_import_inherits_from_groups_and_defaults(ctx):
    report = inventory.import_nornir(*nornir_files(), actor="test")
    assert (report.created, report.updated, report.errors) == (5, 0, [])
    assert devices() == {
        "core-r1": ("10.0.0.1", 830, "cisco_ios", "netmiko", True, "", ["core", "core_ios"]),
        "core-r2": (
            "core-r2.example.net",
            2222,
            "cisco_ios",
            "netmiko",
            True,
            "",
            ["core", "core_ios", "dc1"],
        ),
        "edge-sw1": (
            "2001:db8::10",
            2200,
            "arista_eos",
            "netmiko",
            True,
            "rack 7",
            ["access", "edge", "pod7"],
        ),
        "lab-xr": ("lab-xr.example.net", 22, "cisco_xr", "netmiko", False, "", ["lab"]),
        "spine1": ("10.0.1.1", 22, "juniper_junos", "netmiko", True, "", []),
    }


def test_nornir_bad_hosts_are_reported_by_the_line_of_their_key(ctx):
    hosts = (
        "good:\n"  # 1
        "  hostname: 10.0.0.1\n"
        "  platform: ios\n"
        "nohost:\n"  # 4
        "  platform: ios\n"
        "badplat:\n"  # 6
        "  hostname: 10.0.0.3\n"
        "  platform: vyos_x\n"
        "orphan:\n"  # 9
        "  hostname: 10.0.0.4\n"
        "  platform: ios\n"
        "  groups: [missing]\n"
        "good:\n"  # 13: duplicate key
        "  hostname: 10.0.0.5\n"
        "  platform: eos\n"
        "badport:\n"  # 16
        "  hostname: 10.0.0.6\n"
        "  platform: ios\n"
        "  port: 0\n"
    )
    report = inventory.import_nornir(hosts, actor="test")
    assert [(e.line, e.name) for e in report.errors] == [
        (4, "nohost"),
        (6, "badplat"),
        (9, "orphan"),
        (13, "good"),
        (16, "badport"),
    ]
    assert report.errors[0].message.startswith("No hostname")
    assert report.errors[2].message == "Unknown group 'missing' (not in groups.yaml)."
    assert report.errors[3].message == "Duplicate name 'good' (first on line 1)."
    assert count(Device) == 0
    partial = inventory.import_nornir(hosts, partial=True, actor="test")
    assert partial.created == 1 and list(devices()) == ["good"]


def test_nornir_unreadable_yaml_and_cycles(ctx):
    report = inventory.import_nornir("r1:\n  hostname: [oops\n  password: hunter2\n", actor="test")
    assert len(report.errors) == 1 and report.errors[0].line >= 2
    assert report.errors[0].message.startswith("hosts.yaml is not valid YAML")
    assert "hunter2" not in report.errors[0].message
    cycle = inventory.import_nornir(
        "r1:\n  hostname: 10.0.0.1\n  groups: [a]\n",
        "a:\n  groups: [b]\nb:\n  groups: [a]\n  platform: ios\n",
        actor="test",
    )
    assert [(e.line, e.message) for e in cycle.errors] == [(1, "Groups form a cycle: a -> b -> a.")]


# ---------------------------------------------------------------------- export


@pytest.fixture
def fresh_app(pg_admin, template_db, app_factory, tmp_path, jobs_dir):
    """A second app on a second, freshly migrated database."""
    name = f"rookery_fresh_{uuid.uuid4().hex[:12]}"
    _execute(
        pg_admin,
        sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
            sql.Identifier(name), sql.Identifier(template_db)
        ),
    )
    url = _swap_db(pg_admin, name)
    yield app_factory(make_config(url, tmp_path / "fresh", ROOKERY_JOBS_PATH=str(jobs_dir)))
    _execute(
        pg_admin, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


def _sample_inventory() -> None:
    add("r1", tags=["core", "dc1"])
    add("dc2/r2:a", host="2001:db8::2", port=830, platform="juniper_junos", tags=["core"])
    add(
        "sw1",
        host="sw1.example.net",
        platform="arista_eos",
        tags=[],
        enabled=False,
        notes='odd, "quoted"\nnotes: with: colons',
    )
    add("123", host="10.0.0.123", platform="cisco_nxos", tags=["456", "yes"])


@pytest.mark.parametrize("kind", ["csv", "nornir"])
def test_export_round_trips_into_a_fresh_database(ctx, fresh_app, kind):
    _sample_inventory()
    original = devices()
    exported = inventory.export_csv() if kind == "csv" else inventory.export_nornir()
    with fresh_app.app_context():
        if kind == "csv":
            report = inventory.import_csv(exported, actor="test")
        else:
            report = inventory.import_nornir(
                exported["hosts.yaml"], exported["groups.yaml"], actor="test"
            )
        assert (report.created, report.errors) == (4, [])
        assert devices() == original
        # Exporting again gives the same text: the round trip is exact.
        again = inventory.export_csv() if kind == "csv" else inventory.export_nornir()
        assert again == exported
        # And importing the same file onto itself changes nothing.
        if kind == "csv":
            assert inventory.import_csv(exported, actor="test").unchanged == 4


def test_export_csv_shape(ctx):
    add("r1", tags=["core", "dc1"])
    assert inventory.export_csv() == (
        "name,host,port,platform,driver,tags,enabled,notes\n"
        "r1,10.0.0.1,22,cisco_ios,netmiko,core;dc1,true,\n"
    )
    files = inventory.export_nornir()
    assert set(files) == {"hosts.yaml", "groups.yaml"}
    assert "core: {}" in files["groups.yaml"]
