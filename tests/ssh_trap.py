"""An SSH server that records the passwords it is offered: an attacker's host, for tests.

``SshTrap`` listens on 127.0.0.1 only, presents a host key of its own (a fresh ECDSA
key unless one is given) and refuses every login, keeping what each client offered in
``attempts`` (user name, password). A test points a device at it and asserts which
secrets reached it — none, when Rookery's promises hold.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

import paramiko


class _Recorder(paramiko.ServerInterface):
    def __init__(self, attempts: list[tuple[str, str]], lock: threading.Lock) -> None:
        self._attempts = attempts
        self._lock = lock

    def get_allowed_auths(self, username: str) -> str:
        return "password,keyboard-interactive"

    def check_auth_password(self, username: str, password: str) -> int:
        with self._lock:
            self._attempts.append((username, password))
        return paramiko.AUTH_FAILED

    def check_auth_interactive(self, username: str, submethods: str) -> int:
        return paramiko.AUTH_FAILED


class SshTrap:
    """A listening SSH server on 127.0.0.1 that records offered passwords."""

    def __init__(self, host_key: paramiko.PKey | None = None) -> None:
        self.host_key = host_key or paramiko.ECDSAKey.generate()
        self.attempts: list[tuple[str, str]] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def passwords(self) -> list[str]:
        with self._lock:
            return [password for _user, password in self.attempts]

    def start(self) -> SshTrap:
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, name="ssh-trap", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> SshTrap:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _address = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        transport = paramiko.Transport(client)
        try:
            transport.add_server_key(self.host_key)
            transport.start_server(server=_Recorder(self.attempts, self._lock))
            # keep the session up while the client tries its passwords
            transport.accept(timeout=10)
        except (paramiko.SSHException, OSError, EOFError):
            pass
        finally:
            transport.close()
