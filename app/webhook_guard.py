"""Where a webhook may be delivered: public addresses, plus what an admin allows.

An operator types a webhook's URL, and the worker that POSTs to it sits inside the
network. Without a check, ``http://127.0.0.1:5432/`` or ``http://169.254.169.254/``
would make deliveries (and the log lines telling how they went) a port scanner of
whatever the worker can reach. So a webhook target must be a public address:

- :func:`forbidden_reason` classifies one address, with no traffic: loopback,
  private (RFC 1918, ULA ``fc00::/7``), shared ``100.64.0.0/10`` (carrier-grade NAT),
  link-local (``169.254.0.0/16`` with the cloud metadata service, ``fe80::/10``),
  multicast, unspecified, reserved and broadcast addresses, anything else that is
  not globally routable, and the IPv6 forms that carry one of those IPv4 addresses
  (``::ffff:127.0.0.1``, 6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``) are refused;
- :class:`AllowList` is ``ROOKERY_WEBHOOK_ALLOW``: networks (CIDR) and host names an
  admin allows for internal receivers;
- :func:`check_host` resolves a host and checks EVERY address it resolves to (one
  forbidden address refuses the host: a name that answers a public and a private
  address may hand the private one to the connection) and returns the checked
  addresses, which the delivery connects to without resolving again (so a second DNS
  answer cannot swap in another address: DNS rebinding);
- :func:`save_refusal` is the check made when a webhook is saved.

Resolution goes through :data:`RESOLVER` (``socket.getaddrinfo`` by default), bounded
in time; tests replace it so that no name is ever looked up for real.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: resolves (host, port) to address strings; raises OSError when it cannot
Resolver = Callable[[str, int], Sequence[str]]

SETTING = "ROOKERY_WEBHOOK_ALLOW"

#: seconds a save waits for a name to resolve (an unresolved name is saved: see save_refusal)
SAVE_RESOLVE_SECONDS = 3.0

REFUSED = (
    "Webhook targets may not be loopback, private, link-local, multicast or other "
    "non-public addresses"
)
HINT = f"an admin can allow internal receivers with {SETTING}."

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix (RFC 6052)
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
#: IETF protocol assignments (RFC 6890): not globally reachable, though Python before
#: 3.12.4 calls most of it global
_PROTOCOL_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")


class TargetRefused(Exception):
    """A webhook target whose address is not allowed."""

    def __init__(
        self, host: str, address: IPAddress | None, reason: str, *, literal: bool = False
    ) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        self.literal = literal or address is None
        super().__init__(
            f"{host} is {reason}" if self.literal else f"{host} resolves to {address}, {reason}"
        )

    @property
    def public(self) -> str:
        """What the person saving it may read: a name's address is not told."""
        if self.literal:
            return f"{self.host} is {self.reason}"
        return f"{self.host} resolves to {self.reason}"


class Unresolved(Exception):
    """A webhook target's host name did not resolve (in time)."""


# ------------------------------------------------------------------ addresses


def unmapped(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (``::ffff:10.0.0.1``) as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_address(text: str) -> IPAddress | None:
    """The address a URL's host spells literally (brackets and zone allowed), else None."""
    value = text.strip().strip("[]").replace("%25", "%")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def forbidden_reason(address: IPAddress | str) -> str | None:
    """Why ``address`` may not be a webhook target ("loopback", "private"...), or None.

    Pure: no lookup, no traffic. IPv4-mapped, 6to4 and NAT64 IPv6 addresses are judged
    by the IPv4 address they carry.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    ip = unmapped(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: ipaddress.IPv4Address | None = ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = forbidden_reason(embedded)
            if inner is not None:
                return f"{inner} (carried in an IPv6 address)"
            if ip in _NAT64:
                return None  # DNS64 hands out these for public IPv4 receivers
    checks: tuple[tuple[str, bool], ...] = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("broadcast", ip == _BROADCAST),
        ("shared (carrier-grade NAT)", ip in _SHARED),
        ("reserved", ip.is_reserved or ip in _PROTOCOL_ASSIGNMENTS),
        ("private", ip.is_private),
        ("not globally routable", not ip.is_global),
    )
    for reason, hit in checks:
        if hit:
            if reason == "not globally routable":
                return "an address that is not globally routable"
            return f"{'an' if reason[0] in 'aeiou' else 'a'} {reason} address"
    return None


# ------------------------------------------------------------------ allow-list


def _host_name(value: str) -> str:
    return value.strip().rstrip(".").lower()


@dataclass(frozen=True)
class AllowList:
    """``ROOKERY_WEBHOOK_ALLOW``: networks and host names internal receivers may use."""

    networks: tuple[IPNetwork, ...] = ()
    names: frozenset[str] = frozenset()

    def allows_address(self, address: IPAddress) -> bool:
        ip = unmapped(address)
        return any(ip.version == net.version and ip in net for net in self.networks)

    def allows_name(self, host: str) -> bool:
        return _host_name(host) in self.names

    def __bool__(self) -> bool:
        return bool(self.networks or self.names)


def parse_allow_list(raw: str | Iterable[str] | None) -> AllowList:
    """Comma-separated CIDRs (``10.20.0.0/16``), addresses and host names; ValueError on a
    malformed entry."""
    if raw is None:
        return AllowList()
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    networks: list[IPNetwork] = []
    names: set[str] = set()
    for item in items:
        entry = str(item).strip()
        if not entry:
            continue
        if "/" in entry or parse_address(entry) is not None:
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not a network (CIDR), an address nor a host name"
                ) from None
            continue
        name = _host_name(entry)
        labels = name.split(".")
        if not all(
            0 < len(label) <= 63 and label.replace("-", "").replace("_", "").isalnum()
            for label in labels
        ):
            raise ValueError(f"{entry!r} is not a network (CIDR), an address nor a host name")
        names.add(name)
    return AllowList(tuple(networks), frozenset(names))


@functools.lru_cache(maxsize=16)
def _cached(raw: str) -> AllowList:
    return parse_allow_list(raw)


def allow_list(config_value: str | Iterable[str] | None) -> AllowList:
    """The allow-list a config value stands for (parsed once per distinct value)."""
    if config_value is None or isinstance(config_value, str):
        return _cached(config_value or "")
    return parse_allow_list(config_value)


def validate_setting(raw: str) -> str:
    """``ROOKERY_WEBHOOK_ALLOW`` as read from the environment: checked, kept as text."""
    parse_allow_list(raw)
    return raw.strip()


# ------------------------------------------------------------------ resolution


def system_resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to for a TCP connection (getaddrinfo)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


#: what resolves names; tests replace it (no real lookups in tests)
RESOLVER: Resolver = system_resolve


def _resolve_within(resolve: Resolver, host: str, port: int, timeout: float) -> list[str]:
    """``resolve(host, port)``, given up on after ``timeout`` seconds (getaddrinfo has no
    timeout of its own: a hung resolver would hold the request or the worker)."""
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["value"] = list(resolve(host, port))
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=work, name="rookery-resolve", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise Unresolved(f"{host} did not resolve within {timeout:g} s")
    error = box.get("error")
    if isinstance(error, OSError | UnicodeError | ValueError):
        raise Unresolved(f"{host} does not resolve: {error}")
    if isinstance(error, BaseException):
        raise error
    value = box.get("value") or []
    assert isinstance(value, list)
    if not value:
        raise Unresolved(f"{host} resolves to no address")
    return value


def _is_localhost(name: str) -> bool:
    return name == "localhost" or name.endswith(".localhost")  # RFC 6761


def check_host(
    host: str,
    port: int,
    allow: AllowList,
    *,
    resolve: Resolver | None = None,
    timeout: float = 10.0,
) -> list[str]:
    """The addresses of ``host`` a webhook may connect to, every one of them checked.

    A literal address is checked as it is. A name is resolved, and one forbidden
    address among its answers refuses it (TargetRefused). A name or network on the
    allow-list is not refused. Unresolved when the name does not resolve in time.
    """
    name = _host_name(host)
    literal = parse_address(name)
    if literal is not None:
        ip = unmapped(literal)
        if not allow.allows_address(ip):
            reason = forbidden_reason(ip)
            if reason is not None:
                raise TargetRefused(name, ip, reason, literal=True)
        return [str(ip)]
    trusted = allow.allows_name(name)
    if _is_localhost(name) and not trusted:
        raise TargetRefused(name, None, "a loopback name")
    answers = _resolve_within(resolve or RESOLVER, name, port, timeout)
    checked: list[str] = []
    for answer in answers:
        found = parse_address(answer)
        if found is None:
            raise Unresolved(f"{name} resolved to something that is not an address")
        ip = unmapped(found)
        if not trusted and not allow.allows_address(ip):
            reason = forbidden_reason(ip)
            if reason is not None:
                raise TargetRefused(name, ip, reason)
        if str(ip) not in checked:
            checked.append(str(ip))
    return checked


def default_port(scheme: str) -> int:
    return 443 if scheme.lower() == "https" else 80


def save_refusal(url: str, allow: AllowList, *, resolve: Resolver | None = None) -> str | None:
    """Why a webhook URL may not be saved (a field error), or None.

    A literal forbidden address, or a name resolving to one, is refused. A name that
    does not resolve now is accepted: the receiver's name may not exist yet, or this
    web server may not use the workers' DNS; every delivery checks again anyway, and
    that check (not this one) is what keeps deliveries off internal addresses.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or default_port(parts.scheme)
    except ValueError:
        return None  # the URL's own checks say what is wrong with it
    try:
        check_host(host, port, allow, resolve=resolve, timeout=SAVE_RESOLVE_SECONDS)
    except TargetRefused as exc:
        return f"{REFUSED} ({exc.public}); {HINT}"
    except Unresolved:
        return None
    return None
