"""Webhook targets: the address classifier, the allow-list, the resolver check, pinning.

The classifier and the allow-list are pure functions: no lookup, no traffic. The
resolver check runs with injected resolvers. Deliveries that connect only ever
connect to 127.0.0.1 (a receiver in a thread); a public address is checked by the
classifier alone, or reaches a stubbed ``_connect`` that records it and connects to
nothing.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app import config, webhook_guard
from app import webhooks as delivery
from app.errors import ConfigError
from app.webhook_guard import AllowList, TargetRefused, Unresolved, check_host, forbidden_reason

FORBIDDEN = {
    # IPv4
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "10.0.0.1": "private",
    "10.255.255.254": "private",
    "172.16.0.1": "private",
    "172.31.255.1": "private",
    "192.168.0.1": "private",
    "192.168.255.254": "private",
    "100.64.0.1": "shared (carrier-grade NAT)",
    "100.127.255.254": "shared (carrier-grade NAT)",
    "169.254.169.254": "link-local",
    "169.254.0.1": "link-local",
    "0.0.0.0": "unspecified",
    "0.1.2.3": "private",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "255.255.255.255": "broadcast",
    "240.0.0.1": "reserved",
    "192.0.2.1": "private",
    "198.18.0.1": "private",
    "192.0.0.8": "reserved",
    "192.0.0.200": "reserved",
    # IPv6
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "fe80::1%eth0": "link-local",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "ff02::1": "multicast",
    "ff0e::1": "multicast",
    "2001:db8::1": "private",
    "::7f00:1": "reserved",
    "100::1": "reserved",
    # IPv6 forms of forbidden IPv4 addresses
    "::ffff:127.0.0.1": "loopback",
    "::ffff:10.0.0.1": "private",
    "::ffff:169.254.169.254": "link-local",
    "::ffff:0.0.0.0": "unspecified",
    "2002:7f00:1::1": "loopback",
    "2002:a00:1::": "private",
    "64:ff9b::7f00:1": "loopback",
    "64:ff9b::a9fe:a9fe": "link-local",
}

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below 100.64.0.0/10
    "100.128.0.1",  # just above it
    "172.32.0.1",  # just above 172.16.0.0/12
    "2001:4860::8888",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # DNS64's form of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize(("address", "kind"), sorted(FORBIDDEN.items()))
def test_forbidden_addresses(address: str, kind: str) -> None:
    reason = forbidden_reason(address)
    assert reason is not None and kind in reason, (address, reason)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed_without_any_traffic(address: str) -> None:
    assert forbidden_reason(address) is None
    assert forbidden_reason(ipaddress.ip_address(address)) is None


def test_every_address_python_calls_internal_is_forbidden() -> None:
    """Whatever this Python's ipaddress tables say, nothing non-global gets through."""
    for address in (*FORBIDDEN, *ALLOWED):
        ip = webhook_guard.unmapped(ipaddress.ip_address(address))
        flags = (
            ip.is_loopback,
            ip.is_private,
            ip.is_link_local,
            ip.is_multicast,
            ip.is_unspecified,
            ip.is_reserved,
            not ip.is_global,
        )
        if ip in ipaddress.ip_network("64:ff9b::/96") and forbidden_reason(address) is None:
            # DNS64's form of a public IPv4 address: judged by that address
            assert ip.is_reserved and ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF).is_global
            continue
        if any(flags):
            assert forbidden_reason(address) is not None, address


# ------------------------------------------------------------------ allow-list


def test_allow_list_parses_networks_addresses_and_names() -> None:
    allow = webhook_guard.parse_allow_list(" 127.0.0.1/32, 10.20.0.0/16,hooks.Internal., fd00::1,")
    assert allow.allows_address(ipaddress.ip_address("127.0.0.1"))
    assert allow.allows_address(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert not allow.allows_address(ipaddress.ip_address("127.0.0.2"))
    assert allow.allows_address(ipaddress.ip_address("10.20.255.1"))
    assert not allow.allows_address(ipaddress.ip_address("10.21.0.1"))
    assert allow.allows_address(ipaddress.ip_address("fd00::1"))
    assert allow.allows_name("HOOKS.internal.") and not allow.allows_name("other.internal")
    assert not webhook_guard.parse_allow_list("") and not webhook_guard.parse_allow_list(None)


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "http://hooks/", "a b", "10.0.0.0/8,-x-/", "x..y"])
def test_a_bad_allow_list_is_a_clear_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="ROOKERY_WEBHOOK_ALLOW"):
        config.read_settings({"ROOKERY_WEBHOOK_ALLOW": bad}, {})
    with pytest.raises(ConfigError, match="ROOKERY_WEBHOOK_ALLOW"):
        config.read_settings({}, {"ROOKERY_WEBHOOK_ALLOW": bad})


def test_the_allow_list_is_empty_by_default() -> None:
    assert config.read_settings({}, {})["ROOKERY_WEBHOOK_ALLOW"] == ""
    assert not webhook_guard.allow_list("")


# ------------------------------------------------------------------ resolution


def resolver(*answers: str, calls: list[str] | None = None):
    def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        return list(answers)

    return resolve


def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    with pytest.raises(TargetRefused) as caught:
        check_host("hooks.example.net", 443, AllowList(), resolve=resolver("8.8.8.8", "10.0.0.7"))
    assert caught.value.address == ipaddress.ip_address("10.0.0.7")
    assert "private" in str(caught.value)
    assert "10.0.0.7" not in caught.value.public, "the saving person is not told the address"


def test_a_name_with_only_public_addresses_gives_them_back_unconnected() -> None:
    calls: list[str] = []
    found = check_host(
        "hooks.example.net.",
        443,
        AllowList(),
        resolve=resolver("8.8.8.8", "2001:4860::8888", "8.8.8.8", calls=calls),
    )
    assert found == ["8.8.8.8", "2001:4860::8888"]
    assert calls == ["hooks.example.net"]


@pytest.mark.parametrize(
    "answers",
    [("127.0.0.1",), ("::1",), ("::ffff:127.0.0.1",), ("169.254.169.254",), ("8.8.8.8", "::1")],
)
def test_a_name_resolving_to_loopback_or_metadata_is_refused(answers: tuple[str, ...]) -> None:
    with pytest.raises(TargetRefused):
        check_host("rebind.example.net", 80, AllowList(), resolve=resolver(*answers))


def test_literals_are_checked_without_resolving() -> None:
    calls: list[str] = []
    spy = resolver("8.8.8.8", calls=calls)
    with pytest.raises(TargetRefused, match="loopback"):
        check_host("[::ffff:127.0.0.1]", 80, AllowList(), resolve=spy)
    assert check_host("8.8.8.8", 80, AllowList(), resolve=spy) == ["8.8.8.8"]
    assert check_host("::ffff:8.8.8.8", 80, AllowList(), resolve=spy) == ["8.8.8.8"]
    assert calls == []


def test_localhost_names_are_refused_without_resolving() -> None:
    calls: list[str] = []
    for name in ("localhost", "LOCALHOST.", "api.localhost"):
        with pytest.raises(TargetRefused, match="loopback"):
            check_host(name, 80, AllowList(), resolve=resolver("8.8.8.8", calls=calls))
    assert calls == []


def test_numeric_spellings_of_loopback_are_refused() -> None:
    """127.1, 2130706433 and 0x7f.1 are not ipaddress literals but do resolve to 127.0.0.1
    (the tests' resolver only resolves such numeric forms: no DNS query)."""
    for host in ("127.1", "2130706433", "0x7f.1", "0177.0.0.1"):
        with pytest.raises(TargetRefused, match="loopback"):
            check_host(host, 80, AllowList())


def test_the_allow_list_admits_its_networks_and_names_only() -> None:
    allow = webhook_guard.parse_allow_list("127.0.0.1/32,10.20.0.0/16,hooks.internal")
    assert check_host("127.0.0.1", 80, allow) == ["127.0.0.1"]
    assert check_host("::ffff:127.0.0.1", 80, allow) == ["127.0.0.1"]
    with pytest.raises(TargetRefused):
        check_host("127.0.0.2", 80, allow)
    assert check_host("x.example.net", 80, allow, resolve=resolver("10.20.1.1")) == ["10.20.1.1"]
    with pytest.raises(TargetRefused):
        check_host("x.example.net", 80, allow, resolve=resolver("10.20.1.1", "10.30.0.1"))
    found = check_host("hooks.internal", 80, allow, resolve=resolver("10.99.0.1", "fd00::9"))
    assert found == ["10.99.0.1", "fd00::9"], "an allowed name may resolve to anything"


def test_names_that_do_not_resolve_are_unresolved() -> None:
    def fails(host: str, port: int) -> list[str]:
        raise OSError(-2, "Name or service not known")

    with pytest.raises(Unresolved):
        check_host("nowhere.example.net", 80, AllowList(), resolve=fails)
    with pytest.raises(Unresolved):
        check_host("nowhere.example.net", 80, AllowList(), resolve=resolver())
    with pytest.raises(Unresolved):
        check_host("odd.example.net", 80, AllowList(), resolve=resolver("not-an-address"))


def test_a_hung_resolver_is_given_up_on() -> None:
    release = threading.Event()

    def hangs(host: str, port: int) -> list[str]:
        release.wait(10)
        return ["8.8.8.8"]

    started = time.monotonic()
    try:
        with pytest.raises(Unresolved, match="within"):
            check_host("slow.example.net", 80, AllowList(), resolve=hangs, timeout=0.2)
    finally:
        release.set()
    assert time.monotonic() - started < 5


def test_save_refusal_messages() -> None:
    allow = AllowList()
    refused = webhook_guard.save_refusal("http://127.0.0.1:5432/", allow)
    assert refused is not None
    assert "127.0.0.1 is a loopback address" in refused and "ROOKERY_WEBHOOK_ALLOW" in refused
    by_name = webhook_guard.save_refusal(
        "https://db.example.net/", allow, resolve=resolver("8.8.8.8", "10.1.2.3")
    )
    assert by_name is not None and "db.example.net resolves to a private address" in by_name
    assert "10.1.2.3" not in by_name
    assert webhook_guard.save_refusal("https://nowhere.example.net/", allow) is None
    assert (
        webhook_guard.save_refusal("https://ok.example.net/", allow, resolve=resolver("1.1.1.1"))
        is None
    )
    allowed = webhook_guard.parse_allow_list("127.0.0.1/32")
    assert webhook_guard.save_refusal("http://127.0.0.1:5432/", allowed) is None


# ------------------------------------------------------------------ delivery (no app)


BODY = b'{"event":"failure"}'
HEADERS = {"Content-Type": "application/json", "User-Agent": delivery.USER_AGENT}


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """``_connect`` records its address and connects to nothing."""
    seen: list[tuple[str, int]] = []

    def refuse(address: str, port: int, timeout: float):
        seen.append((address, port))
        raise ConnectionRefusedError(111, "Connection refused (test: no traffic)")

    monkeypatch.setattr(delivery, "_connect", refuse)
    return seen


def test_a_refused_delivery_connects_nowhere(no_connections) -> None:
    with pytest.raises(delivery.DeliveryFailed) as caught:
        delivery.post(
            "http://rebind.example.net:8080/hook",
            BODY,
            HEADERS,
            allow=AllowList(),
            resolve=resolver("93.184.215.14", "127.0.0.1"),
        )
    assert caught.value.refused and caught.value.http_status is None
    assert "address not allowed" in str(caught.value) and "127.0.0.1" in str(caught.value)
    assert caught.value.public == "not delivered"
    assert no_connections == [], "not even the public address was tried"


def test_delivery_connects_to_the_checked_addresses_only(no_connections) -> None:
    calls: list[str] = []
    with pytest.raises(delivery.DeliveryFailed) as caught:
        delivery.post(
            "https://hooks.example.net/hook",
            BODY,
            HEADERS,
            allow=AllowList(),
            resolve=resolver("93.184.215.14", "2606:2800:220:1::1", calls=calls),
        )
    assert no_connections == [("93.184.215.14", 443), ("2606:2800:220:1::1", 443)]
    assert calls == ["hooks.example.net"], "resolved once, then pinned"
    assert "Connection refused" in str(caught.value) and caught.value.public == "not delivered"


# ------------------------------------------------------------------ pinning, for real (127.0.0.1)


class Receiver:
    """An HTTP(S) server on 127.0.0.1 recording each POST's Host header and the TLS SNI."""

    def __init__(self, status: int = 200, context: ssl.SSLContext | None = None) -> None:
        self.hosts: list[str] = []
        self.sni: list[str | None] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                recorder.hosts.append(self.headers["Host"])
                self.send_response(status)
                self.send_header("Location", "http://127.0.0.2:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if context is not None:

            def remember(sock, name, ctx) -> None:
                recorder.sni.append(name)

            context.sni_callback = remember
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


LOCAL = webhook_guard.parse_allow_list("127.0.0.1/32")


def test_a_name_is_delivered_to_its_checked_address_with_its_host_header(receiver) -> None:
    calls: list[str] = []
    status = delivery.post(
        f"http://receiver.test:{receiver.port}/hook?token=x",
        BODY,
        HEADERS,
        allow=LOCAL,
        resolve=resolver("127.0.0.1", calls=calls),
    )
    assert status == 200
    assert receiver.hosts == [f"receiver.test:{receiver.port}"]
    assert calls == ["receiver.test"]


def test_a_redirect_is_a_failed_attempt() -> None:
    server = Receiver(status=302)
    try:
        with pytest.raises(delivery.DeliveryFailed) as caught:
            delivery.post(f"http://127.0.0.1:{server.port}/", BODY, HEADERS, allow=LOCAL)
    finally:
        server.close()
    assert caught.value.http_status == 302 and caught.value.public == "HTTP 302"
    assert len(server.hosts) == 1


def _tls_files(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA, and a certificate of ``name`` it signed (files: CA cert, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, key, issuer: str, issuer_key, *, ca: bool):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )  # fmt: skip
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("Rookery test CA", ca_key, "Rookery test CA", ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(name, key, "Rookery test CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    paths = (folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    paths[0].write_bytes(ca_cert.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def test_https_keeps_sni_and_certificate_checks_on_the_host_name(tmp_path, monkeypatch) -> None:
    ca, cert, key = _tls_files(tmp_path, "receiver.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = Receiver(context=context)
    real = ssl.create_default_context
    monkeypatch.setattr(delivery.ssl, "create_default_context", lambda: real(cafile=str(ca)))
    to_local = resolver("127.0.0.1")
    try:
        status = delivery.post(
            f"https://receiver.test:{server.port}/hook",
            BODY,
            HEADERS,
            allow=LOCAL,
            resolve=to_local,
        )
        assert status == 200
        assert server.sni == ["receiver.test"]
        assert server.hosts == [f"receiver.test:{server.port}"]
        with pytest.raises(delivery.DeliveryFailed) as caught:
            delivery.post(
                f"https://impostor.test:{server.port}/hook",
                BODY,
                HEADERS,
                allow=LOCAL,
                resolve=to_local,
            )
        assert "certificate" in str(caught.value).lower()
        assert server.sni[-1] == "impostor.test"
        assert len(server.hosts) == 1, "nothing was posted to the wrong certificate"
    finally:
        server.close()
