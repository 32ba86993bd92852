#!/usr/bin/env python
"""Config-search benchmark: 10,000 devices x 300 lines, searched through the web API.

    python bench/search.py [--devices 10000] [--lines 300] [--requests 50] [--explain]

Sets up its own database as bench/pipeline.py does (embedded PostgreSQL in a temporary
folder when DATABASE_URL is unset; else a database of its own on that server, dropped
at the end) and migrates it. Then:

1. ``--devices`` devices (sites of 40: two core routers and 38 access switches, tagged
   ``site-NNN``, the routers also ``core``) and their latest configs in
   ``latest_configs``: ``--lines`` IOS-like lines each (hostname, VLANs, interfaces
   with descriptions and addresses, routing, ACLs, logging, SNMP, NTP, banner, vty
   lines), generated here and COPYed in. Five devices, spread over the fleet, carry
   three rare lines (``transport input telnet`` on their vty lines, an SNMP community
   with ``RW``, ``logging host 198.51.100.7``); two of the five are core routers. The
   trigram index (where PostgreSQL has pg_trgm) is dropped for the load and built back
   from the migration's own definition afterwards; then ANALYZE.
2. A viewer (``rookery user create``) and an API token (``rookery token create``); a
   real ``rookery web`` process. Every query below is timed ``--requests`` times after
   a warm-up, one at a time on one keep-alive connection, ``Authorization: Bearer``:
   ``GET /api/v1/configs/search`` with a selective plain-text pattern, a selective
   regular expression, the plain pattern case-sensitive, the plain pattern filtered by
   tag, a selective address, and a pattern every device matches (capped at 500 devices
   by the service); ``GET /api/v1/devices/<id>``, the baseline; and the selective
   pattern through the page ``/configs/search`` (the viewer logged in through the form).
   Every answer is checked: exactly the planted devices (or the first 500 by name),
   every line shown matching; a wrong answer ends the benchmark with exit code 1.
3. Where pg_trgm is there, everything is measured twice: with the trigram index, then
   without it (``DROP INDEX``, ANALYZE). On the embedded PostgreSQL (no pg_trgm) only
   the second runs, and the output says so. The plan PostgreSQL chose for each query
   (the service's own SQL, caught as it runs, under EXPLAIN ANALYZE) is summed up under
   the table (``--explain``: the whole plans).

Prints a table, then one JSON line per figure: ``<query>_p95_ms`` (with the index) and
``<query>_p95_ms_no_trgm`` (without), target < 300 ms for the selective ones (the
issue's "p95 under 300 ms for a selective pattern"), none for the broad one; the same
for the page (``page_p95_ms``);
``selective_p95_vs_single_device_lookup`` (search p95 / device lookup p95, same run)
and ``selective_trgm_speedup`` (p95 without the index / with it).
Exit code 0 when the benchmark ran (a missed target is ``"pass": false``), 1 when it
could not (set-up failed, the web server did not start, an answer was wrong).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
for _path in (str(REPO), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import psycopg  # noqa: E402

# The database, the web process, the viewer and the table are live.py's and pipeline.py's.
from live import CLI, USERNAME, Server, create_user, percentile, start_server, web_env  # noqa: E402
from pipeline import (  # noqa: E402
    BenchError,
    Workers,
    app_log_to_file,
    cleanup,
    open_database,
    print_table,
    run_guarded,
    say,
)

from app.services.config_search import MAX_DEVICES  # noqa: E402

BENCH = "search"
DEFAULT_DEVICES = 10_000
DEFAULT_LINES = 300
DEFAULT_REQUESTS = 50
WARMUP = 3
TARGET_MS = 300.0
PLANTED = 5
SITE_SIZE = 40  # devices per site: units 0 and 1 are core routers, the rest access switches
TRGM_INDEX = "ix_latest_configs_body_trgm"
CORE_TAG = "core"
COMMIT = "b" * 40

CITIES = (
    "ams", "ber", "bos", "chi", "dal", "fra", "lon", "mad", "mil", "nyc",
    "par", "sea", "sfo", "sin", "syd", "tok", "tor", "vie", "waw", "zrh",
)  # fmt: skip

# The rare lines of the planted devices, each in place of an ordinary one (same count).
TELNET_LINE = " transport input telnet"
RW_LINE = "snmp-server community <removed> RW SNMP-RO"
IP_LINE = "logging host 198.51.100.7"


@dataclass(frozen=True)
class Query:
    """One timed search: its name (the figure's), its API parameters, what it must find."""

    name: str
    label: str
    params: dict[str, str]
    expect: str  # "planted", "planted core" or "first 500"
    target: float | None = TARGET_MS


QUERIES = (
    Query("selective", "plain text", {"q": "transport input telnet"}, "planted"),
    Query(
        "regex",
        "regular expression",
        {"q": r"^snmp-server community \S+ RW( |$)", "regex": "true"},
        "planted",
    ),
    Query("case", "case-sensitive", {"q": "transport input telnet", "case": "true"}, "planted"),
    Query(
        "filtered",
        "filtered by tag",
        {"q": "transport input telnet", "tag": CORE_TAG},
        "planted core",
    ),
    Query("address", "an address", {"q": "logging host 198.51.100.7"}, "planted"),
    Query("broad", "every device", {"q": "ntp server"}, "first 500", target=None),
)
LOOKUP = "single_device_lookup"
PAGE = "page"  # the selective query through the HTML page, logged in
PAGE_QUERY = QUERIES[0]


# ---------------------------------------------------------------------------- fleet


def device_name(i: int) -> str:
    site, unit = divmod(i, SITE_SIZE)
    role = "core" if unit < 2 else "acc"
    return f"{CITIES[site % len(CITIES)]}{site:03d}-{role}{unit:02d}"


def planted_indexes(devices: int) -> list[int]:
    """Five devices spread over the fleet; units 0..4 of their sites: two core routers."""
    return sorted({min(devices - 1, k * devices // PLANTED + k) for k in range(PLANTED)})


def is_core(i: int) -> bool:
    return i % SITE_SIZE < 2


def _post(i: int, b: int, core: bool, planted: bool) -> list[str]:
    """The end of a config: ACLs, logging, SNMP, NTP, banner, lines. Always kept whole."""
    site, unit = divmod(i, SITE_SIZE)
    source = "Loopback0" if core else "Vlan99"
    return [
        "ip access-list standard SNMP-RO",
        " permit 10.0.250.0 0.0.0.255",
        f" permit 10.{b}.250.0 0.0.0.255",
        "ip access-list extended MGMT-IN",
        " remark management stations",
        " permit tcp 10.0.250.0 0.0.0.255 any eq 22",
        f" permit tcp 10.{b}.250.0 0.0.0.255 any eq 22",
        " deny   ip any any log",
        "!",
        "logging trap informational",
        f"logging source-interface {source}",
        "logging host 10.0.251.10",
        IP_LINE if planted else f"logging host 10.{b}.251.11",
        "!",
        RW_LINE if planted else "snmp-server community <removed> RO SNMP-RO",
        f"snmp-server location {CITIES[site % len(CITIES)].upper()} site {site} "
        f"room {1 + unit % 3} rack {unit % 12 + 1}",
        "snmp-server contact noc@corp.example.net",
        "snmp-server enable traps snmp linkdown linkup coldstart warmstart",
        "snmp-server host 10.0.251.20 version 2c <removed>",
        "!",
        f"ntp source {source}",
        "ntp server 10.0.0.1 prefer",
        f"ntp server 10.{b}.0.1",
        "!",
        "banner motd ^C",
        "Authorized access only. Disconnect now if you are not an authorized user.",
        "^C",
        "!",
        "line con 0",
        " exec-timeout 5 0",
        " logging synchronous",
        "line vty 0 4",
        " access-class MGMT-IN in",
        " exec-timeout 10 0",
        " transport input ssh",
        "line vty 5 15",
        " access-class MGMT-IN in",
        " exec-timeout 10 0",
        TELNET_LINE if planted else " transport input ssh",
        "!",
        "end",
    ]


def _pre(i: int, b: int, core: bool) -> list[str]:
    """The head of a config: version, services, AAA, DNS, spanning tree, VLANs."""
    site = i // SITE_SIZE
    return [
        "version 17.3" if core else "version 15.2",
        "service timestamps debug datetime msec localtime show-timezone",
        "service timestamps log datetime msec localtime show-timezone",
        "service password-encryption",
        "!",
        f"hostname {device_name(i)}",
        "!",
        "boot-start-marker",
        "boot-end-marker",
        "!",
        "logging buffered 64000 informational",
        "enable secret 9 <removed>",
        "!",
        "username netops privilege 15 secret 9 <removed>",
        "aaa new-model",
        "aaa authentication login default group tacacs+ local",
        "aaa authorization exec default group tacacs+ local",
        "aaa accounting exec default start-stop group tacacs+",
        f"clock timezone UTC{(site % 24) - 11:+d} {(site % 24) - 11} 0",
        f"ip domain name {CITIES[site % len(CITIES)]}.corp.example.net",
        f"ip name-server 10.{b}.0.53 10.0.0.53",
        "no ip http server",
        "no ip http secure-server",
        "ip ssh version 2",
        "vtp mode transparent",
        "spanning-tree mode rapid-pvst",
        "spanning-tree extend system-id",
        "!",
        "vlan 10",
        " name USERS",
        "vlan 20",
        " name VOICE",
        "vlan 30",
        " name PRINTERS",
        "vlan 40",
        " name WIFI",
        "vlan 99",
        " name MGMT",
        "!",
    ]


def _extras(i: int, b: int, core: bool) -> list[str]:
    """After the interfaces: a router's loopback, SVIs and routing; a switch's SVI."""
    unit = i % SITE_SIZE
    if not core:
        return [
            "interface Vlan99",
            " description management",
            f" ip address 10.{b}.250.{unit + 10} 255.255.255.0",
            "!",
            f"ip default-gateway 10.{b}.250.1",
            "!",
        ]
    lines = [
        "interface Loopback0",
        f" ip address 10.255.{b}.{unit + 1} 255.255.255.255",
        "!",
    ]
    for vlan, third in ((10, 10), (20, 20), (30, 30), (40, 40), (99, 250)):
        lines += [
            f"interface Vlan{vlan}",
            f" description site {i // SITE_SIZE} vlan {vlan}",
            f" ip address 10.{b}.{third}.{unit + 2} 255.255.255.0",
            " ip helper-address 10.0.5.10",
            f" standby {vlan} ip 10.{b}.{third}.1",
            "!",
        ]
    lines += [
        "router ospf 1",
        f" router-id 10.255.{b}.{unit + 1}",
        " passive-interface default",
        " no passive-interface TenGigabitEthernet1/1/1",
        f" network 10.{b}.0.0 0.0.255.255 area {b}",
        f" network 10.255.{b}.0 0.0.0.255 area 0",
        "!",
        "ip route 0.0.0.0 0.0.0.0 10.0.254.1 250",
        "!",
    ]
    return lines


def _interfaces(i: int, b: int, core: bool) -> Iterator[str]:
    """Interface blocks, as many as asked for: routed links on a router, ports on a switch."""
    site, unit = divmod(i, SITE_SIZE)
    k = 0
    while True:
        k += 1
        if core:
            peer = 2 + (k - 1) % (SITE_SIZE - 2)
            yield from (
                f"interface TenGigabitEthernet1/{1 + (k - 1) // 8}/{1 + (k - 1) % 8}",
                f" description to {CITIES[site % len(CITIES)]}{site:03d}-acc{peer:02d} "
                f"Te1/1/{1 + unit}",
                " no switchport",
                f" ip address 10.{b}.{100 + k // 64}.{(k % 64) * 4 + unit + 1} 255.255.255.252",
                " ip ospf network point-to-point",
                " ip ospf cost 10",
                "!",
            )
            continue
        port = f"GigabitEthernet{1 + (k - 1) // 48}/0/{1 + (k - 1) % 48}"
        floor = 1 + (site + k) % 6
        if k % 24 == 0:
            yield from (
                f"interface {port}",
                f" description uplink to {device_name(i - unit + k // 24 % 2)}",
                " switchport trunk allowed vlan 10,20,30,40,99",
                " switchport mode trunk",
                " ip dhcp snooping trust",
                "!",
            )
        elif k % 11 == 0:
            yield from (
                f"interface {port}",
                f" description AP-{floor}F-{(site * 7 + k) % 90:02d}",
                " switchport access vlan 40",
                " switchport mode access",
                " spanning-tree portfast",
                "!",
            )
        else:
            kind = "printer" if k % 17 == 0 else "desk"
            yield from (
                f"interface {port}",
                f" description {kind} {floor}F-{(site * 13 + unit * 48 + k) % 400:03d}",
                f" switchport access vlan {30 if kind == 'printer' else 10}",
                " switchport mode access",
                " switchport voice vlan 20",
                " spanning-tree portfast",
                " spanning-tree bpduguard enable",
                "!",
            )


def config_text(i: int, lines: int, planted: bool) -> str:
    """Device ``i``'s latest config: exactly ``lines`` lines (at least min_lines())."""
    site, _ = divmod(i, SITE_SIZE)
    b, core = site % 256, is_core(i)
    pre, extras, post = _pre(i, b, core), _extras(i, b, core), _post(i, b, core, planted)
    budget = lines - len(pre) - len(extras) - len(post)
    if budget < 0:  # a short config: keep the end whole, the head as far as it fits
        extras = extras[: max(0, len(extras) + budget)]
        pre = pre[: lines - len(extras) - len(post)]
        budget = 0
    ports = _interfaces(i, b, core)
    body = [*pre, *(next(ports) for _ in range(budget)), *extras, *post]
    return "\n".join(body) + "\n"


def min_lines() -> int:
    return len(_post(0, 0, True, False)) + 6  # with the hostname line


# ------------------------------------------------------------------------ bulk load


@dataclass
class Fleet:
    ids: dict[str, int]  # name -> id
    planted: set[int]  # device ids
    planted_core: set[int]
    names_sorted: list[str]
    load_seconds: float = 0.0
    index_seconds: float | None = None
    table_mb: float = 0.0
    index_mb: float | None = None


def load_fleet(dsn: str, devices: int, lines: int) -> tuple[Fleet, str | None]:
    """Devices, tags and latest configs, COPYed in with the trigram index dropped;
    returns the fleet and the index's definition (None: no pg_trgm here)."""
    started = time.monotonic()
    now = datetime.now(UTC)
    planted_idx = set(planted_indexes(devices))
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (TRGM_INDEX,)
        ).fetchone()
        indexdef = row[0] if row else None
        if indexdef:
            conn.execute(f"DROP INDEX {TRGM_INDEX}")
        with conn.cursor().copy(
            "COPY devices (name, host, port, platform, driver, enabled, notes, created_at, "
            "updated_at) FROM STDIN"
        ) as copy:
            for i in range(devices):
                site, unit = divmod(i, SITE_SIZE)
                platform = "cisco_xe" if is_core(i) else "cisco_ios"
                host = f"10.{site % 256}.250.{unit + 10}"
                copy.write_row((device_name(i), host, 22, platform, "netmiko", True, "", now, now))
        ids = dict(conn.execute("SELECT name, id FROM devices").fetchall())
        sites = sorted({i // SITE_SIZE for i in range(devices)})
        with conn.cursor().copy("COPY tags (name, description, created_at) FROM STDIN") as copy:
            copy.write_row((CORE_TAG, "core routers", now))
            for site in sites:
                copy.write_row((f"site-{site:03d}", "", now))
        tag_ids = dict(conn.execute("SELECT name, id FROM tags").fetchall())
        with conn.cursor().copy("COPY device_tags (device_id, tag_id) FROM STDIN") as copy:
            for i in range(devices):
                device_id = ids[device_name(i)]
                copy.write_row((device_id, tag_ids[f"site-{i // SITE_SIZE:03d}"]))
                if is_core(i):
                    copy.write_row((device_id, tag_ids[CORE_TAG]))
        with conn.cursor().copy(
            "COPY latest_configs (device_id, commit, committed_at, body) FROM STDIN"
        ) as copy:
            for i in range(devices):
                body = config_text(i, lines, i in planted_idx)
                copy.write_row((ids[device_name(i)], COMMIT, now, body))
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE devices, tags, device_tags, latest_configs")
    fleet = Fleet(
        ids=ids,
        planted={ids[device_name(i)] for i in planted_idx},
        planted_core={ids[device_name(i)] for i in planted_idx if is_core(i)},
        names_sorted=sorted(ids),
        load_seconds=time.monotonic() - started,
    )
    fleet.table_mb = _size_mb(dsn, "pg_total_relation_size('latest_configs')")
    return fleet, indexdef


def _size_mb(dsn: str, expression: str) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return float(conn.execute(f"SELECT {expression}").fetchone()[0]) / 2**20


def build_index(dsn: str, indexdef: str, fleet: Fleet) -> None:
    """The migration's trigram index, built over the loaded table, then ANALYZE."""
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute(indexdef)
        conn.execute("ANALYZE latest_configs")
    fleet.index_seconds = time.monotonic() - started
    fleet.index_mb = _size_mb(dsn, f"pg_relation_size('{TRGM_INDEX}')")


def drop_index(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP INDEX {TRGM_INDEX}")
        conn.execute("ANALYZE latest_configs")


# ------------------------------------------------------------------------ the API


def create_token(db_uri: str, tmp: Path) -> str:
    """``rookery token create`` for the viewer; the token is the last line printed."""
    result = subprocess.run(
        [*CLI, "token", "create", USERNAME, "--name", "bench-search"],
        env=web_env(db_uri, tmp, "rookery-bench-cli"),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines or not lines[-1].startswith("rk_"):
        raise BenchError(f"rookery token create failed:\n{result.stdout}{result.stderr}")
    return lines[-1].strip()


class Client:
    """One keep-alive connection to the web process, sending ``headers`` (the API token,
    or the session cookie of the viewer logged in through the form)."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.headers = headers
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, url: str) -> tuple[float, bytes]:
        """Milliseconds for the whole answer (status line to the body's last byte), body."""
        started = time.perf_counter()
        self.conn.request("GET", url, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.will_close:
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        if response.status != 200:
            raise BenchError(f"GET {url} answered HTTP {response.status}: {body[:300]!r}")
        return elapsed, body

    def close(self) -> None:
        self.conn.close()


def search_url(query: Query) -> str:
    return "/api/v1/configs/search?" + urlencode(query.params)


def line_matcher(query: Query) -> re.Pattern[str]:
    text = query.params["q"]
    flags = 0 if query.params.get("case") == "true" else re.IGNORECASE
    return re.compile(text if query.params.get("regex") == "true" else re.escape(text), flags)


def check_search(query: Query, body: bytes, fleet: Fleet, devices: int) -> int:
    """Exactly the devices the query must find, each line shown matching; the size of
    the answer in bytes. A wrong answer is a BenchError."""
    found = json.loads(body)
    names = [item["device"]["name"] for item in found["items"]]
    ids = {item["device"]["id"] for item in found["items"]}
    if query.expect == "first 500":
        want = fleet.names_sorted[:MAX_DEVICES]
        ok = names == want and found["truncated"] is (devices > MAX_DEVICES)
    else:
        want_ids = fleet.planted_core if query.expect == "planted core" else fleet.planted
        ok = ids == want_ids and len(names) == len(ids) and found["truncated"] is False
        want = sorted(name for name, i in fleet.ids.items() if i in want_ids)
    pattern = line_matcher(query)
    lines_ok = all(
        item["matches"] and all(pattern.search(m["line"]) for m in item["matches"])
        for item in found["items"]
    )
    if not ok or not lines_ok or found["searched"] != devices:
        raise BenchError(
            f"{query.name} search ({search_url(query)}) answered {len(names)} device(s) "
            f"{names[:8]}, truncated={found['truncated']}, searched={found['searched']}; "
            f"expected {len(want)}: {want[:8]} (of {devices} searched); "
            f"every line matching: {lines_ok}"
        )
    return len(body)


@dataclass
class Timing:
    samples_ms: list[float]
    size: int = 0  # bytes of one answer
    plan: str = ""  # what PostgreSQL did, in short
    plan_ms: float = math.nan  # the query's execution time under EXPLAIN ANALYZE

    @property
    def p50(self) -> float:
        return percentile(self.samples_ms, 0.5)

    @property
    def p95(self) -> float:
        return percentile(self.samples_ms, 0.95)


def time_url(client: Client, url: str, requests: int, check: Any) -> Timing:
    """``WARMUP`` untimed requests, then ``requests`` timed; every answer checked."""
    samples: list[float] = []
    size = 0
    for n in range(WARMUP + requests):
        elapsed, body = client.get(url)
        size = check(body)
        if n >= WARMUP:
            samples.append(elapsed)
    return Timing(samples, size)


# ---------------------------------------------------------------------------- plans


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


def summarize(plan: dict[str, Any]) -> str:
    """How the devices and their configs were joined, how latest_configs was read."""
    parts = []
    for node in _walk(plan["Plan"]):
        kind = node["Node Type"]
        index = node.get("Index Name", "")
        loops = node.get("Actual Loops", 1) or 1
        if kind in ("Nested Loop", "Hash Join", "Merge Join") and not parts:
            parts.append(kind)
        elif kind in ("Gather", "Gather Merge"):
            parts.append(f"{kind} ({node.get('Workers Launched', 0)} workers)")
        elif index == TRGM_INDEX:
            parts.append(f"{kind} on the trigram index: {node.get('Actual Rows', 0):g} candidates")
        elif node.get("Relation Name") == "latest_configs":
            # PostgreSQL reports rows and removed rows per loop
            kept = node.get("Actual Rows", 0)
            removed = node.get("Rows Removed by Index Recheck", 0) + node.get(
                "Rows Removed by Filter", 0
            )
            name = f"{kind} ({index})" if index else kind
            if loops > 1:
                parts.append(f"{name} x {loops} loops")
            elif kind == "Bitmap Heap Scan":
                parts.append(f"{name}: {kept:g} kept, {removed:g} removed by recheck")
            else:
                parts.append(f"{name}: {kept:g} kept, {removed:g} filtered out")
    return ", ".join(parts) or plan["Plan"]["Node Type"]


def explain(app: Any, query: Query, full: bool) -> tuple[str, float, str]:
    """EXPLAIN ANALYZE of the search's own query (caught as the service runs it)."""
    from sqlalchemy import event

    from app.extensions import db
    from app.services import config_search

    caught: list[tuple[str, Any]] = []

    def catch(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        caught.append((statement, parameters))

    params = query.params
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", catch)
        try:
            config_search.search(
                params["q"],
                regex=params.get("regex") == "true",
                case=params.get("case") == "true",
                tag=params.get("tag"),
                platform=params.get("platform"),
            )
        finally:
            event.remove(db.engine, "before_cursor_execute", catch)
        statement, parameters = next(s for s in caught if "latest_configs.body" in s[0])
        conn = db.session.connection()
        result = conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters
        ).scalar()
        text_plan = ""
        if full:
            rows = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
            ).scalars()
            text_plan = "\n".join(rows)
        db.session.rollback()
        db.session.remove()
    plan = (result if isinstance(result, list) else json.loads(result))[0]
    return summarize(plan), float(plan["Execution Time"]), text_plan


# ---------------------------------------------------------------------------- run


@dataclass
class Variant:
    name: str  # "trgm" or "no_trgm"
    label: str
    timings: dict[str, Timing] = field(default_factory=dict)
    plans: dict[str, str] = field(default_factory=dict)  # full text plans (--explain)


def measure(
    variant: Variant,
    app: Any,
    client: Client,
    browser: Client,
    fleet: Fleet,
    args: argparse.Namespace,
    lookup_id: int,
) -> None:
    say(f"  {variant.label}:")
    lookup = time_url(
        client,
        f"/api/v1/devices/{lookup_id}",
        args.requests,
        lambda body: _check_lookup(body, lookup_id),
    )
    variant.timings[LOOKUP] = lookup
    say(f"    GET /api/v1/devices/<id>: p50 {lookup.p50:.1f} ms, p95 {lookup.p95:.1f} ms")
    for query in QUERIES:
        timing = time_url(
            client,
            search_url(query),
            args.requests,
            lambda body, q=query: check_search(q, body, fleet, args.devices),
        )
        timing.plan, timing.plan_ms, text_plan = explain(app, query, args.explain)
        if text_plan:
            variant.plans[query.name] = text_plan
        variant.timings[query.name] = timing
        say(f"    {query.name:<9} p50 {timing.p50:7.1f} ms, p95 {timing.p95:7.1f} ms")
    page = time_url(
        browser,
        "/configs/search?" + urlencode(PAGE_QUERY.params),
        args.requests,
        lambda body: _check_page(body, fleet),
    )
    variant.timings[PAGE] = page
    say(f"    {PAGE:<9} p50 {page.p50:7.1f} ms, p95 {page.p95:7.1f} ms")


def _check_page(body: bytes, fleet: Fleet) -> int:
    """The page lists exactly the planted devices."""
    shown = {int(i) for i in re.findall(rb'id="search-device-(\d+)"', body)}
    if shown != fleet.planted:
        raise BenchError(
            f"the search page for {PAGE_QUERY.params['q']!r} showed devices {sorted(shown)}, "
            f"expected {sorted(fleet.planted)}"
        )
    return len(body)


def _check_lookup(body: bytes, device_id: int) -> int:
    found = json.loads(body)
    if found.get("id") != device_id:
        raise BenchError(f"GET /api/v1/devices/{device_id} answered {body[:200]!r}")
    return len(body)


def figure(name: str, value: float, target: float | None, passed: bool) -> dict[str, Any]:
    return {"bench": BENCH, "figure": name, "value": value, "target": target, "pass": passed}


def report(
    args: argparse.Namespace, fleet: Fleet, variants: list[Variant], trgm_available: bool
) -> list[dict[str, Any]]:
    figures: list[dict[str, Any]] = []
    say()
    say(
        f"  {args.devices:,} devices x {args.lines} lines ({fleet.table_mb:.1f} MiB in "
        f"latest_configs), loaded and analyzed in {fleet.load_seconds:.1f}s"
        + (
            f"; trigram index built in {fleet.index_seconds:.1f}s ({fleet.index_mb:.0f} MiB)"
            if fleet.index_seconds is not None
            else ""
        )
    )
    if not trgm_available:
        say(
            "  this PostgreSQL has no pg_trgm (the embedded one): measured without the "
            "trigram index only"
        )
    say(f"  p50/p95 ms over {args.requests} requests each (after {WARMUP} untimed)")
    rows: list[tuple[str, ...]] = [("query", *(v.label for v in variants), "answer", "target")]

    def row(name: str, target: str) -> tuple[str, ...]:
        cells = [f"{v.timings[name].p50:.1f}/{v.timings[name].p95:.1f}" for v in variants]
        return (name, *cells, f"{variants[0].timings[name].size:,} B", target)

    rows.append(row(LOOKUP, "baseline"))
    for query in QUERIES:
        rows.append(row(query.name, "none" if query.target is None else f"< {query.target:g} ms"))
    rows.append(row(PAGE, f"< {TARGET_MS:g} ms"))
    print_table(rows)
    say("  what each one asks:")
    say(f"    {LOOKUP:<20} GET /api/v1/devices/<id> (a planted device)")
    for query in QUERIES:
        options = "".join(f" {k}={v}" for k, v in query.params.items() if k != "q")
        say(f"    {query.name:<20} '{query.params['q']}'{options} ({query.label}): {query.expect}")
    say(f"    {PAGE:<20} GET /configs/search?q='{PAGE_QUERY.params['q']}', logged in (HTML)")
    for v in variants:
        say(f"  plans ({v.label}; the service's query under EXPLAIN ANALYZE):")
        for query in QUERIES:
            t = v.timings[query.name]
            say(f"    {query.name:<9} {t.plan} ({t.plan_ms:.1f} ms)")
        for name, plan in v.plans.items():
            say(f"  --- {name}, {v.label}:")
            for line in plan.splitlines():
                say(f"    {line}")
    for v in variants:
        suffix = "" if v.name == "trgm" else "_no_trgm"
        for query in QUERIES:
            p95 = round(v.timings[query.name].p95, 1)
            passed = True if query.target is None else p95 < query.target
            figures.append(figure(f"{query.name}_p95_ms{suffix}", p95, query.target, passed))
        p95 = round(v.timings[PAGE].p95, 1)
        figures.append(figure(f"page_p95_ms{suffix}", p95, TARGET_MS, p95 < TARGET_MS))
    main_variant = variants[0]
    suffix = "" if main_variant.name == "trgm" else "_no_trgm"
    ratio = main_variant.timings["selective"].p95 / main_variant.timings[LOOKUP].p95
    figures.append(
        figure(f"selective_p95_vs_single_device_lookup{suffix}", round(ratio, 3), None, True)
    )
    say(f"  selective search p95 / device lookup p95 ({main_variant.label}): {ratio:.1f}")
    if len(variants) == 2:
        speedup = variants[1].timings["selective"].p95 / variants[0].timings["selective"].p95
        figures.append(figure("selective_trgm_speedup", round(speedup, 3), None, True))
        say(f"  selective p95 without the index / with it: {speedup:.1f}x")
    misses = [f["figure"] for f in figures if not f["pass"]]
    say(f"  targets missed: {', '.join(misses)}" if misses else "  every target met")
    say()
    return figures


def _dispose(app: Any) -> None:
    from app.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def run(args: argparse.Namespace, tmp: Path, workers: Workers) -> list[dict[str, Any]]:
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db

    say(
        f"Rookery config-search benchmark: {args.devices:,} devices x {args.lines} lines, "
        f"{args.requests} requests per query"
    )
    started = time.monotonic()
    app_log_to_file(tmp / "bench-app.log")
    bench_db = open_database(tmp)
    cleanup.append(bench_db.drop)
    app = create_app({"DATABASE_URL": bench_db.uri, "ROOKERY_INSTANCE": str(tmp / "instance")})
    cleanup.append(lambda: _dispose(app))
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        db.session.remove()
        dsn = app.config["ROOKERY_PG_DSN"]
    with psycopg.connect(dsn) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
        ctype = conn.execute(
            "SELECT datctype FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]
    say(
        f"  database: {bench_db.kind} PostgreSQL {version} (lc_ctype {ctype}), migrated in "
        f"{time.monotonic() - started:.1f}s"
    )
    say(f"  loading {args.devices:,} devices and their configs ...")
    fleet, indexdef = load_fleet(dsn, args.devices, args.lines)
    say(
        f"    {fleet.table_mb:.1f} MiB in latest_configs in {fleet.load_seconds:.1f}s; "
        f"planted: {len(fleet.planted)} devices ({len(fleet.planted_core)} tagged {CORE_TAG})"
    )
    create_user(bench_db.uri, tmp)
    token = create_token(bench_db.uri, tmp)
    server: Server = start_server("werkzeug", workers, bench_db.uri, tmp)
    say(f"  {server.label} on port {server.port}; API token created")
    client = Client(server.port, {"Authorization": f"Bearer {token}"})
    cleanup.append(client.close)
    browser = Client(server.port, {"Cookie": server.cookie})
    cleanup.append(browser.close)
    lookup_id = min(fleet.planted)
    variants: list[Variant] = []
    if indexdef:
        say("  building the trigram index (the migration's definition) ...")
        build_index(dsn, indexdef, fleet)
        say(f"    built in {fleet.index_seconds:.1f}s, {fleet.index_mb:.0f} MiB")
        variants.append(Variant("trgm", "with pg_trgm index"))
        measure(variants[-1], app, client, browser, fleet, args, lookup_id)
        drop_index(dsn)
    else:
        say("  no pg_trgm on this PostgreSQL (the embedded one lacks it): no index to measure")
    variants.append(Variant("no_trgm", "without index"))
    measure(variants[-1], app, client, browser, fleet, args, lookup_id)
    workers.stop(server.worker)
    return report(args, fleet, variants, bool(indexdef))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=DEFAULT_DEVICES, help="devices loaded")
    parser.add_argument(
        "--lines", type=int, default=DEFAULT_LINES, help="lines of each device's config"
    )
    parser.add_argument(
        "--requests", type=int, default=DEFAULT_REQUESTS, help="timed requests per query"
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print each query's full EXPLAIN (ANALYZE, BUFFERS) plan",
    )
    args = parser.parse_args(argv)
    if args.devices < 5 * PLANTED:
        parser.error(f"--devices: at least {5 * PLANTED}")
    if args.lines < min_lines():
        parser.error(f"--lines: at least {min_lines()} (the end of a config is kept whole)")
    if args.requests < 1:
        parser.error("--requests: at least 1")
    return run_guarded("rookery-bench-search-", lambda tmp, s: run(args, tmp, s[0]), [Workers()])


if __name__ == "__main__":
    sys.exit(main())
