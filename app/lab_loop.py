"""An asyncio event loop in a background thread, started and stopped from ordinary code:
what the asyncssh device emulators (``app.stateful_lab.StatefulLab`` and
``bench/_fastssh.FastSSHLab``) share. A subclass gives ``_start`` and ``_stop``
(coroutines run on the loop) and the devices whose ports the stop forgets."""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Iterable
from typing import Any, Self

#: asyncssh (the labs' SSH server) still names DSA keys, deprecated since cryptography 51:
#: not a lab's concern, and not worth a warning each time one starts
ASYNCSSH_DSA = {"message": "DSA is deprecated", "category": UserWarning, "module": "asyncssh"}
warnings.filterwarnings("ignore", **ASYNCSSH_DSA)


class LoopThread:
    """``start()`` runs the loop in a daemon thread and awaits ``_start()`` on it;
    ``stop()`` awaits ``_stop()``, ends the loop and forgets the devices' ports."""

    #: the thread's name, for stack dumps and logs
    thread_name = "lab-loop"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    def _port_holders(self) -> Iterable[Any]:
        """What has a ``port`` the stop sets back to None."""
        return ()

    def _before_start(self) -> None:
        """Set-up in the calling thread before the loop starts (nothing by default)."""

    def start(self) -> Self:
        if self._loop is not None:
            return self
        self._before_start()
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), loop).result(timeout=120)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
                self._thread = None
            loop.close()
            for holder in self._port_holders():
                holder.port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
