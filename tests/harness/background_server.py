"""A loopback HTTP server run on a thread for the length of a test, logging
what it was asked: the shared lifecycle of the test doubles (proxy, index)."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Generic, Self, TypeVar

Logged = TypeVar("Logged")


class BackgroundServer(Generic[Logged]):
    """Serves ``server`` until :meth:`close`; subclasses append to ``requests``."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.requests: list[Logged] = []
        self._lock = threading.Lock()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def record(self, entry: Logged) -> None:
        with self._lock:
            self.requests.append(entry)

    def log(self) -> list[Logged]:
        with self._lock:
            return list(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
