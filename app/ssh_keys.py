"""SSH host keys as Rookery keeps them: type, base64 blob, OpenSSH fingerprint, known_hosts.

A device's pinned host key is stored as its type (``ssh-ed25519``, ``ecdsa-sha2-nistp256``,
``ssh-rsa``) and the base64 of its public blob, as in an OpenSSH ``known_hosts`` line; its
fingerprint is OpenSSH's ``SHA256:<base64 of the blob's SHA-256, unpadded>`` (what
``ssh-keygen -lf`` and ``ssh`` print). Nothing here talks to a device or the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from typing import Any

#: the host key types paramiko can check (OpenSSH's names)
KNOWN_TYPES: tuple[str, ...] = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
MAX_KEY_CHARS = 16_384  # an RSA-16384 public key is about 2.8 kB of base64


class InvalidKey(ValueError):
    """Text that is not an SSH public key Rookery can pin; the message says why."""


@dataclass(frozen=True)
class HostKey:
    """An SSH public key: its type and the base64 of its blob."""

    type: str
    key: str

    @property
    def blob(self) -> bytes:
        return base64.b64decode(self.key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)

    def openssh(self) -> str:
        """``<type> <base64>``, as in ``authorized_keys`` or ``ssh-keyscan``'s output."""
        return f"{self.type} {self.key}"

    @classmethod
    def from_pkey(cls, pkey: Any) -> HostKey:
        """The key of a paramiko ``PKey`` (what a transport's server presented)."""
        return cls(type=pkey.get_name(), key=pkey.get_base64())


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA-256 fingerprint of a public key blob: ``SHA256:`` + unpadded base64."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """The host as a ``known_hosts`` file (and paramiko) names it: ``[host]:port`` unless 22."""
    host = host.strip()
    return host if int(port) == 22 else f"[{host}]:{int(port)}"


def known_hosts_line(host: str, port: int, key: HostKey) -> str:
    """One ``known_hosts`` line pinning ``key`` for ``host``:``port``."""
    name = known_hosts_name(host, port)
    if not name or any(c in name for c in " \t\r\n,#") or name.startswith("|"):
        raise ValueError(f"{host!r} cannot be written as a known_hosts host name")
    return f"{name} {key.type} {key.key}\n"


def _blob_type(blob: bytes) -> str:
    """The key type a public key blob names in its first field (an SSH string)."""
    if len(blob) < 4:
        raise InvalidKey("The key is too short to be an SSH public key.")
    (length,) = struct.unpack(">I", blob[:4])
    if not 0 < length <= 64 or len(blob) < 4 + length:
        raise InvalidKey("The key data does not start with a key type.")
    try:
        return blob[4 : 4 + length].decode("ascii")
    except UnicodeDecodeError:
        raise InvalidKey("The key data does not start with a key type.") from None


def parse_public_key(text: str) -> HostKey:
    """A public key as OpenSSH writes it: ``<type> <base64> [comment]``.

    Also takes a ``known_hosts`` or ``ssh-keyscan`` line (``<host> <type> <base64>``):
    the host field is dropped. The blob must decode, name the same type, and load as a
    key of that type giving back the same bytes, so a typo is refused here rather than at the
    next connection.
    """
    fields = (text or "").strip().split()
    if not fields:
        raise InvalidKey("Give a public key: '<type> <base64>', e.g. 'ssh-ed25519 AAAAC3Nz...'.")
    if len(text) > MAX_KEY_CHARS:
        raise InvalidKey(f"The key is longer than {MAX_KEY_CHARS} characters.")
    if fields[0] not in KNOWN_TYPES and len(fields) >= 3 and fields[1] in KNOWN_TYPES:
        fields = fields[1:]  # a known_hosts line: the host first
    if len(fields) < 2:
        raise InvalidKey("Give the key type and the base64 key: '<type> <base64>'.")
    key_type, data = fields[0], fields[1]
    if key_type not in KNOWN_TYPES:
        raise InvalidKey(
            f"Unknown or unsupported key type {key_type[:40]!r}; one of {', '.join(KNOWN_TYPES)}."
        )
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKey("The key is not valid base64.") from None
    if _blob_type(blob) != key_type:
        raise InvalidKey(f"The key data is not a {key_type} key (it says {_blob_type(blob)!r}).")
    from paramiko import PKey

    try:
        loaded = PKey.from_type_string(key_type, blob)
    except Exception as exc:  # whatever paramiko or cryptography say of a bad key: invalid
        reason = str(exc) or type(exc).__name__
        raise InvalidKey(f"The {key_type} key does not load: {reason}.") from None
    if loaded.asbytes() != blob:  # paramiko pads a short field with zeros: cut or padded
        raise InvalidKey(f"The {key_type} key does not load: it is cut short or too long.")
    return HostKey(type=key_type, key=base64.b64encode(blob).decode("ascii"))


def unmatchable_key() -> HostKey:
    """A fresh Ed25519 public key whose private half is discarded at once.

    No server can present it (presenting a host key means signing with it), so pinning
    it makes paramiko refuse whatever key the server offers, with the offered key in the
    refusal: how a connection without an approved key learns the key to show an admin,
    with nothing sent to the server (strict mode).
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    line = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
        .decode("ascii")
    )
    key_type, data = line.split()[:2]
    return HostKey(type=key_type, key=data)
