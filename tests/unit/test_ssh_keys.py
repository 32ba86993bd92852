"""SSH host keys: OpenSSH fingerprints, known_hosts lines paramiko reads back, parsing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import paramiko
import pytest

from app import ssh_keys
from app.ssh_keys import HostKey, InvalidKey

#: a key and its fingerprint as ``ssh-keygen -lf`` printed them (OpenSSH 9)
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFEuQ3RA26oKGP4yBGCKL5fekceP5Lp5l/En123ScV/F vec"
ED25519_FINGERPRINT = "SHA256:FlsUDLPl8XmYRdHKaaFwtryHolcTMUiYSDo4tPOWckY"


def test_fingerprint_is_openssh_sha256_unpadded() -> None:
    key = ssh_keys.parse_public_key(ED25519)
    assert key.type == "ssh-ed25519"
    assert key.fingerprint == ED25519_FINGERPRINT
    assert not key.fingerprint.endswith("=")
    assert key.openssh() == " ".join(ED25519.split()[:2])


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="no ssh-keygen")
@pytest.mark.parametrize(("kind", "bits"), [("ed25519", None), ("ecdsa", "384"), ("rsa", "2048")])
def test_fingerprints_match_ssh_keygen(tmp_path: Path, kind: str, bits: str | None) -> None:
    path = tmp_path / f"id_{kind}"
    command = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "test", "-f", str(path)]
    subprocess.run([*command, *(["-b", bits] if bits else [])], check=True)
    listed = subprocess.run(
        ["ssh-keygen", "-lf", f"{path}.pub"], check=True, capture_output=True, text=True
    ).stdout.split()[1]
    key = ssh_keys.parse_public_key(Path(f"{path}.pub").read_text())
    assert key.fingerprint == listed


def test_fingerprint_of_a_paramiko_key() -> None:
    pkey = paramiko.ECDSAKey.generate()
    key = HostKey.from_pkey(pkey)
    assert key.type == "ecdsa-sha2-nistp256"
    assert key.blob == pkey.asbytes()
    assert key == ssh_keys.parse_public_key(f"{pkey.get_name()} {pkey.get_base64()}")


@pytest.mark.parametrize(
    ("host", "port", "name"),
    [
        ("10.0.0.1", 22, "10.0.0.1"),
        ("10.0.0.1", 2222, "[10.0.0.1]:2222"),
        ("r1.example.net", 830, "[r1.example.net]:830"),
        ("2001:db8::1", 22, "2001:db8::1"),
        ("2001:db8::1", 2022, "[2001:db8::1]:2022"),
    ],
)
def test_known_hosts_names_the_port_as_openssh_does(host: str, port: int, name: str) -> None:
    key = ssh_keys.parse_public_key(ED25519)
    line = ssh_keys.known_hosts_line(host, port, key)
    assert line == f"{name} {key.type} {key.key}\n"


@pytest.mark.parametrize("port", [22, 2222])
def test_paramiko_reads_the_known_hosts_line_back(tmp_path: Path, port: int) -> None:
    """The line is found under the name paramiko's SSHClient.connect looks up."""
    pkey = paramiko.ECDSAKey.generate()
    key = HostKey.from_pkey(pkey)
    path = tmp_path / "known_hosts"
    path.write_text(ssh_keys.known_hosts_line("127.0.0.1", port, key))
    client = paramiko.SSHClient()
    client.load_host_keys(str(path))
    lookup = "127.0.0.1" if port == 22 else f"[127.0.0.1]:{port}"
    found = client.get_host_keys().lookup(lookup)
    assert found is not None and found[key.type] == pkey
    assert client.get_host_keys().lookup("127.0.0.2") is None


def test_a_host_that_cannot_be_a_known_hosts_name_is_refused() -> None:
    key = ssh_keys.parse_public_key(ED25519)
    for host in ("a b", "a,b", "|1|hashed", ""):
        with pytest.raises(ValueError):
            ssh_keys.known_hosts_line(host, 22, key)


def test_parse_takes_keyscan_and_known_hosts_lines() -> None:
    plain = ssh_keys.parse_public_key(ED25519)
    assert ssh_keys.parse_public_key(f"  {ED25519}\n") == plain
    assert ssh_keys.parse_public_key("[10.0.0.1]:2222 " + " ".join(ED25519.split()[:2])) == plain
    assert ssh_keys.parse_public_key("r1 " + ED25519) == plain


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "Give a public key"),
        ("ssh-ed25519", "type and the base64"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "Unknown or unsupported key type"),
        ("ssh-ed25519 not*base64", "not valid base64"),
        # an RSA blob labelled ed25519
        (
            "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7",
            "not a ssh-ed25519 key",
        ),
        # the right label, a truncated key
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFEuQ3RA", "does not load"),
    ],
)
def test_parse_refuses_what_is_not_a_usable_key(text: str, problem: str) -> None:
    with pytest.raises(InvalidKey, match=problem):
        ssh_keys.parse_public_key(text)


def test_unmatchable_keys_are_fresh_valid_ed25519_keys() -> None:
    first, second = ssh_keys.unmatchable_key(), ssh_keys.unmatchable_key()
    assert first.type == "ssh-ed25519" and first != second
    assert ssh_keys.parse_public_key(first.openssh()) == first
