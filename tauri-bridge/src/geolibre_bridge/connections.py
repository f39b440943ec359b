"""Connection limits that uvicorn's httptools protocol does not have, applied
before any request reaches the app (and so before the token check).

- A cap on open connections. At the cap, a new connection closes the one that
  has waited longest without a request in progress (idle keep-alive, or still
  sending its headers); if every connection is busy, the new one is closed.
  Idle sockets can then never lock out ``/health``, and descriptors stay bounded.
- A deadline for the request line and headers (slow-header clients), 408.
- A size limit for the request line and headers, 431: httptools buffers a
  header without bound until it ends.
- Only origin-form targets (``/path``): an absolute-form target names another
  host, which the Host check could not see.
- Repeated accept errors (out of descriptors) are summarised, one line per
  interval, instead of a traceback per attempt.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("geolibre.connections")

ACCEPT_ERROR_SUMMARY_S = 10.0
# Descriptors kept for everything that is not a client (the backend's pipes and
# socket, log files, an installer, uv's downloads), at most a quarter of the limit.
RESERVED_DESCRIPTORS = 256
MAX_BACKLOG = 2048
MACOS_OPEN_MAX = 10240


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may hold; see the README's security section."""

    max_connections: int = 1000
    head_timeout_s: float = 10.0
    max_head_bytes: int = 16 * 1024


def raise_descriptor_limit() -> int:
    """Raise the soft open-files limit to the hard one (as servers do); the new soft limit."""
    if sys.platform == "win32":
        return 16384  # no per-process descriptor limit of this kind; sockets are handles
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    for wanted in (hard if hard != unlimited else 65536, MACOS_OPEN_MAX):
        if soft != unlimited and soft < wanted:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
                return wanted
            except (ValueError, OSError):
                continue  # macOS refuses more than OPEN_MAX
    return soft


def descriptor_budget(configured_cap: int, descriptors: int) -> tuple[int, int]:
    """(connection cap, listen backlog) that fit in ``descriptors`` together.

    asyncio accepts up to ``backlog`` connections per wake-up before any of them
    can be closed for being over the cap, so two such batches are budgeted on top
    of the cap and the reserve: a burst of connects then never runs out of
    descriptors (which would stop accepting, /health included, for a second).
    """
    reserve = min(RESERVED_DESCRIPTORS, descriptors // 4)
    backlog = max(16, min(MAX_BACKLOG, (descriptors - reserve) // 4))
    cap = max(8, min(configured_cap, descriptors - reserve - 2 * backlog))
    return cap, backlog


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; ``limits`` is set per server."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._head_bytes = 0
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._waiting_since = 0.0

    # -- connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._waiting_since = self.loop.time()
        self._arm_head_timer()
        self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._reading_head and not self._refused:
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes:
                kib = self.limits.max_head_bytes // 1024
                self._refuse(431, f"The request line and headers are over {kib} KiB.")

    # -- parser callbacks
    def on_message_begin(self) -> None:
        self._reading_head = True
        self._head_bytes = 0
        self._arm_head_timer()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._reading_head = False
        self._cancel_head_timer()
        if not (self.url.startswith(b"/") or self.url == b"*"):
            self._refuse(400, "The request target must be a path such as /ml/status.")
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        self._waiting_since = self.loop.time()
        if not self.pipeline:
            self._reading_head, self._head_bytes = True, 0  # idle until the next request
        super().on_response_complete()

    # -- limits
    def _idle(self) -> bool:
        """No request in progress: waiting for one, or reading its headers."""
        return self._reading_head and (self.cycle is None or self.cycle.response_complete)

    def _make_room(self) -> None:
        if len(self.connections) <= self.limits.max_connections:
            return
        idle = [
            c for c in self.connections if c is not self and isinstance(c, GuardedHttpTools)
            and c._idle() and not c.transport.is_closing()
        ]  # fmt: skip
        victim = min(idle, key=lambda c: c._waiting_since) if idle else self
        victim._refused = True
        # Out of the count now, not when the loop gets round to closing it: a burst of
        # connects must not push uvicorn's limit_concurrency into answering 503.
        self.connections.discard(victim)
        victim.transport.close()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_late)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._reading_head and not self.transport.is_closing():
            timeout = self.limits.head_timeout_s
            self._refuse(408, f"The request headers did not arrive within {timeout:g} s.")

    def _refuse(self, status: int, message: str) -> None:
        """Answer once and close; never a traceback, never the app."""
        self._refused = True
        self._cancel_head_timer()
        busy = self.cycle is not None and not self.cycle.response_complete
        if not busy and not self.transport.is_closing():
            body = json.dumps({"detail": message}).encode()
            phrase = http.HTTPStatus(status).phrase
            head = (
                f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            )
            self.transport.write(head.encode() + body)
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpTools]:
    """A protocol class carrying ``limits`` (uvicorn builds one instance per connection)."""
    return type("GuardedHttpTools", (GuardedHttpTools,), {"limits": limits})


class AcceptErrorSummary:
    """A loop exception handler: accept errors become one line per interval, with a count."""

    def __init__(self, interval_s: float = ACCEPT_ERROR_SUMMARY_S) -> None:
        self.interval_s = interval_s
        self.count = 0
        self._last = -interval_s

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not str(context.get("message", "")).startswith("socket.accept()"):
            loop.default_exception_handler(context)
            return
        self.count += 1
        now = loop.time()
        if now - self._last >= self.interval_s:
            self._last = now
            exc = context.get("exception")
            reason = getattr(exc, "strerror", None) or exc.__class__.__name__
            log.warning(
                "cannot accept connections (%s): %d refused so far; close idle connections "
                "or raise the open-files limit",
                reason,
                self.count,
            )


class RepeatSummary(logging.Filter):
    """Let one of a repeated log message through per interval, with how many were held back
    (uvicorn warns once per malformed request: a flood of them must not flood the log)."""

    def __init__(self, message: str, interval_s: float = ACCEPT_ERROR_SUMMARY_S) -> None:
        super().__init__()
        self.message = message
        self.interval_s = interval_s
        self.held = 0
        self._last = -interval_s

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() != self.message:
            return True
        now = time.monotonic()
        if now - self._last < self.interval_s:
            self.held += 1
            return False
        if self.held:
            record.msg = f"{self.message} ({self.held} more since the last such line)"
            record.args = None
        self._last, self.held = now, 0
        return True
