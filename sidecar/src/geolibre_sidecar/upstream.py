"""A lean HTTP/1.1 client for the one hot path: POST a streamed upload to the
backend and stream its answer back.

httpx's layers (client, pool, anyio streams, httpcore) cost more CPU per proxied
request than everything else the sidecar does together (measured with py-spy).
This path needs far less: one method, one backend, keep-alive connections, a
body we produce as it arrives. The framing is h11's, the same parser httpx uses.
Everything else that talks to the backend (probes, /models, clearing the model
cache) stays on httpx.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote, urlsplit

import h11

READ_BYTES = 64 * 1024
# samgeo-api (uvicorn) closes a keep-alive connection after 5 s idle; reusing
# only younger ones keeps a request from racing that close.
KEEPALIVE_IDLE_S = 4.0
MAX_IDLE_PER_ORIGIN = 8


class UpstreamError(Exception):
    """The backend could not be reached, or broke off the exchange. The message
    is a short phrase, fit to show inside a sentence."""


class ConnectFailed(UpstreamError):
    """No connection: refused, unknown host, TLS failure or connect timeout."""


class ConnectionBroke(UpstreamError):
    """The connection failed in the middle of the exchange, or the backend's HTTP was broken."""


class ReadTimedOut(UpstreamError):
    """The backend went quiet in the middle of its answer."""


@dataclass(frozen=True)
class Origin:
    """Where a backend URL points, and the headers every request to it carries."""

    scheme: str
    host: str
    port: int
    prefix: str
    host_header: bytes
    authorization: bytes | None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


@lru_cache(maxsize=16)
def parse_origin(url: str) -> Origin:
    """``http://user:pw@host:8000/base`` -> its origin, path prefix and Basic credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the backend URL must be http:// or https:// with a host")
    default_port = 443 if parts.scheme == "https" else 80
    port = parts.port or default_port
    shown = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    host_header = shown if port == default_port else f"{shown}:{port}"
    authorization = None
    if parts.username is not None or parts.password is not None:
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        authorization = b"Basic " + base64.b64encode(pair.encode())
    return Origin(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        prefix=parts.path.rstrip("/"),
        host_header=host_header.encode("idna"),
        authorization=authorization,
    )


class _Connection:
    """One socket and the h11 state machine that frames it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = time.monotonic()

    def fresh_enough(self, now: float) -> bool:
        return (
            now - self.idle_since < KEEPALIVE_IDLE_S
            and not self.writer.is_closing()
            and not self.reader.at_eof()
        )

    def frame(self, event: h11.Event) -> bytes:
        return self.h11.send(event) or b""

    async def write(self, data: bytes) -> None:
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.h11.receive_data(await self.reader.read(READ_BYTES))

    def close(self) -> None:
        self.writer.close()


class UpstreamResponse:
    """The backend's status and headers; the body streams from :meth:`aiter_raw`.
    Always :meth:`aclose` it: that returns the connection or closes it."""

    def __init__(
        self,
        pool: UpstreamClient,
        origin: Origin,
        conn: _Connection,
        head: h11.Response,
    ) -> None:
        self.status_code = head.status_code
        self.headers: list[tuple[bytes, bytes]] = list(head.headers)
        self._pool = pool
        self._origin = origin
        self._conn: _Connection | None = conn
        self._complete = False

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives (transfer framing removed, content untouched)."""
        conn = self._conn
        if conn is None or self._complete:
            return
        timeout_s = self._pool.read_timeout_s
        while True:
            try:
                async with asyncio.timeout(timeout_s):
                    event = await conn.next_event()
            except TimeoutError:
                quiet = f"no data for {timeout_s:g} s in the middle of the answer"
                raise ReadTimedOut(quiet) from None
            except (OSError, h11.ProtocolError) as exc:
                raise ConnectionBroke("the connection broke in the middle of the answer") from exc
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._complete = True
                return
            else:  # ConnectionClosed before the end of the body
                raise ConnectionBroke("the connection closed before the answer was complete")

    async def aread(self, limit_bytes: int) -> bytes:
        """Up to ``limit_bytes`` of the body (error answers are short)."""
        body = b""
        async with contextlib.aclosing(self.aiter_raw()) as chunks:
            async for chunk in chunks:
                body += chunk
                if len(body) > limit_bytes:
                    break
        return body

    def abort(self) -> None:
        """Close the connection now: a pending :meth:`aiter_raw` ends in ConnectionBroke."""
        if self._conn is not None:
            self._conn.close()

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.release(self._origin, conn, reusable=self._complete)


class UpstreamClient:
    """Keep-alive HTTP/1.1 connections to the backend, for streamed POSTs."""

    def __init__(self, *, connect_timeout_s: float, read_timeout_s: float) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def post(
        self,
        url: str,
        path: str,
        *,
        headers: list[tuple[bytes, bytes]],
        body: AsyncIterable[bytes],
        content_length: int | None,
    ) -> UpstreamResponse:
        """Send ``body`` to ``url + path``; return once the answer's head has arrived.

        Errors from ``body`` itself propagate unchanged (the caller raises its own
        there); network failures become :class:`UpstreamError`. The caller bounds the
        wait for the head (the backend may think for minutes); the body's reads time out
        after ``read_timeout_s`` of silence.
        """
        origin = parse_origin(url)
        conn = await self._acquire(origin)
        request_headers = [(b"host", origin.host_header), *headers]
        if origin.authorization is not None:
            request_headers.append((b"authorization", origin.authorization))
        if content_length is None:
            request_headers.append((b"transfer-encoding", b"chunked"))
        else:
            request_headers.append((b"content-length", str(content_length).encode()))
        try:
            head = await self._exchange(conn, origin.prefix + path, request_headers, body)
        except BaseException:  # cancelled, refused by the caller's own checks, or broken
            conn.close()
            raise
        return UpstreamResponse(self, origin, conn, head)

    async def _exchange(
        self,
        conn: _Connection,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: AsyncIterable[bytes],
    ) -> h11.Response:
        write_failed: Exception | None = None
        # The head waits for the first piece of the body: one write (and one
        # packet) instead of two for a small request.
        pending = conn.frame(h11.Request(method="POST", target=target, headers=headers))
        async for chunk in body:
            try:
                await conn.write(pending + conn.frame(h11.Data(data=chunk)))
            except (OSError, h11.ProtocolError) as exc:
                # The backend may have answered early (and closed): read that answer.
                write_failed = exc
                break
            pending = b""
        if write_failed is None:
            try:
                await conn.write(pending + conn.frame(h11.EndOfMessage()))
            except (OSError, h11.ProtocolError) as exc:
                write_failed = exc
        try:
            while True:
                event = await conn.next_event()
                if isinstance(event, h11.Response):
                    return event
                if not isinstance(event, h11.InformationalResponse):  # skip 100 Continue
                    raise ConnectionBroke("the connection closed before an answer came")
        except (OSError, h11.ProtocolError) as exc:
            raise ConnectionBroke("the connection broke before an answer came") from (
                write_failed or exc
            )

    async def _acquire(self, origin: Origin) -> _Connection:
        idle = self._idle.get(origin.key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.fresh_enough(now):
                return conn
            conn.close()
        return await self._connect(origin)

    async def _connect(self, origin: Origin) -> _Connection:
        tls = None
        if origin.scheme == "https":
            if self._ssl is None:
                import httpx  # the same trust store as the sidecar's other backend calls

                self._ssl = httpx.create_ssl_context(trust_env=False)
            tls = self._ssl
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                reader, writer = await asyncio.open_connection(
                    origin.host, origin.port, ssl=tls, limit=READ_BYTES
                )
        except TimeoutError:
            raise ConnectFailed(f"no connection within {self.connect_timeout_s:g} s") from None
        except ssl.SSLError as exc:
            raise ConnectFailed(f"TLS failed: {exc.reason or exc.__class__.__name__}") from exc
        except OSError as exc:
            raise ConnectFailed(_connect_reason(exc)) from exc
        return _Connection(reader, writer)

    def release(self, origin: Origin, conn: _Connection, *, reusable: bool) -> None:
        """Keep a finished connection for the next request, or close it."""
        state = conn.h11
        if reusable and state.our_state is h11.DONE and state.their_state is h11.DONE:
            state.start_next_cycle()
            conn.idle_since = time.monotonic()
            idle = self._idle.setdefault(origin.key, [])
            if len(idle) < MAX_IDLE_PER_ORIGIN:
                idle.append(conn)
                return
        conn.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
                with contextlib.suppress(OSError):
                    await conn.writer.wait_closed()


def _connect_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    return exc.strerror or exc.__class__.__name__
