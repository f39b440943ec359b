"""Relaying samgeo-api's answer to the client as it arrives (see :mod:`.proxy`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from geolibre_sidecar.upstream import UpstreamError, UpstreamResponse

log = logging.getLogger("geolibre.proxy")  # the proxy's log: one story per request

# Headers that describe one hop, or that samgeo-api sets wide open (CORS).
_DROPPED_RESPONSE_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"server", b"date", b"vary"}
)

Release = Callable[[], Awaitable[None]]


class RelayResponse(Response):
    """Streams the backend's answer; closes it and frees the slot however the stream ends.

    A plain ASGI loop rather than StreamingResponse: that one starts a task group
    per response to watch for a disconnect, which costs more than this small
    answer's whole relay, and a client that leaves mid-answer costs us at most the
    rest of an answer the backend has already computed.
    """

    def __init__(
        self, upstream: UpstreamResponse, release: Release, on_done: Callable[[int], None]
    ) -> None:
        self.status_code = upstream.status_code
        self.raw_headers = relayed_headers(upstream.headers)
        self.background = None
        self._upstream = upstream
        self._release = release
        self._on_done = on_done
        self._on_end: list[Callable[[RelayResponse], None]] = []
        self._aborted = False

    def on_end(self, callback: Callable[[RelayResponse], None]) -> None:
        """Call ``callback`` once the relay is over, however it ended."""
        self._on_end.append(callback)

    def abort(self) -> None:
        """The sidecar is exiting: cut the answer now (the client sees a broken
        response) rather than be cancelled mid-send by the server's grace timeout."""
        self._aborted = True
        self._upstream.abort()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        down = 0
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code,
                 "headers": self.raw_headers}
            )  # fmt: skip
            async for chunk in self._upstream.aiter_raw():
                down += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            # Logged once the client has the whole answer, off its critical path.
            self._on_done(down)
        except UpstreamError as exc:
            if self._aborted:
                log.info("answer cut short: the sidecar is shutting down")
                return
            # The status line is sent already: leave the answer unfinished, so the
            # client sees a broken response rather than a short one that looks whole.
            log.warning("backend broke while sending its answer: %s", exc)
        except OSError:  # ASGI servers of spec 2.4 say "client gone" this way
            log.info("client disconnected while the answer was being sent")
        finally:
            await self._upstream.aclose()
            await self._release()
            for callback in self._on_end:
                callback(self)


def relayed_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The backend's headers minus hop-by-hop ones and its wide-open CORS."""
    return [
        (name, value)
        for name, value in headers
        if name not in _DROPPED_RESPONSE_HEADERS and not name.startswith(b"access-control-")
    ]
