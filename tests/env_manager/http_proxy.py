"""A forward HTTP proxy on loopback that may demand a user name and password.

It does what corporate proxies do for the clients we care about (uv, httpx):
``CONNECT host:port`` opens a tunnel (HTTPS goes through it end to end) and an
absolute-URI request (``GET http://host/path``) is forwarded. Without valid
``Proxy-Authorization: Basic`` credentials it answers ``407 Proxy
Authentication Required`` with a ``Proxy-Authenticate`` challenge. Every
request is logged (method, target, whether it was let through).
"""

from __future__ import annotations

import base64
import http.client
import select
import socket
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.harness.background_server import BackgroundServer

TUNNEL_IDLE_S = 30.0
UPSTREAM_TIMEOUT_S = 30.0
BUFFER_BYTES = 65536
HOP_HEADERS = {"proxy-authorization", "proxy-connection", "connection", "keep-alive"}
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


def without_proxy_settings(env: dict[str, str]) -> dict[str, str]:
    """``env`` without proxy variables: the test machine's own proxy must not route
    loopback traffic (each test sets the proxy it means)."""
    return {k: v for k, v in env.items() if k.upper() not in PROXY_VARIABLES}


@dataclass(frozen=True)
class ProxyRequest:
    method: str
    target: str  # host:port for CONNECT, the absolute URL otherwise
    allowed: bool


class AuthProxy(BackgroundServer[ProxyRequest]):
    """A proxy on ``127.0.0.1``; ``credentials=(user, password)`` makes it demand them."""

    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        super().__init__(self._make_server())

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, *, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"http://{auth}{self.netloc}"

    # Serving -----------------------------------------------------------------
    def _authorised(self, handler: BaseHTTPRequestHandler) -> bool:
        if self.credentials is None:
            return True
        header = handler.headers.get("Proxy-Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip()).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        return decoded == f"{self.credentials[0]}:{self.credentials[1]}"

    def _record(self, method: str, target: str, allowed: bool) -> None:
        self.record(ProxyRequest(method, target, allowed))

    def _make_server(self) -> ThreadingHTTPServer:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_CONNECT(self) -> None:
                proxy._connect(self)

            def do_GET(self) -> None:
                proxy._forward(self)

            def do_HEAD(self) -> None:
                proxy._forward(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        return server

    def _refuse(self, handler: BaseHTTPRequestHandler) -> None:
        body = b"Proxy Authentication Required\n"
        handler.send_response(407, "Proxy Authentication Required")
        handler.send_header("Proxy-Authenticate", 'Basic realm="GeoLibre test proxy"')
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body)
        handler.close_connection = True

    def _connect(self, handler: BaseHTTPRequestHandler) -> None:
        allowed = self._authorised(handler)
        self._record("CONNECT", handler.path, allowed)
        if not allowed:
            self._refuse(handler)
            return
        host, _, port = handler.path.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except (OSError, ValueError):
            handler.send_error(502, "Bad Gateway")
            return
        handler.send_response(200, "Connection Established")
        handler.end_headers()
        handler.close_connection = True
        _pipe(handler.connection, upstream)

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        allowed = self._authorised(handler) and handler.path.startswith("http://")
        self._record(handler.command, handler.path, allowed)
        if not allowed:
            self._refuse(handler)
            return
        parts = urlsplit(handler.path)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_HEADERS}
        connection = http.client.HTTPConnection(
            parts.hostname or "", parts.port or 80, timeout=UPSTREAM_TIMEOUT_S
        )
        try:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            connection.request(handler.command, path or "/", headers=headers)
            response = connection.getresponse()
            body = response.read()
        except OSError:
            handler.send_error(502, "Bad Gateway")
            return
        finally:
            connection.close()
        handler.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_HEADERS | {"content-length", "transfer-encoding"}:
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)


def _pipe(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes (or stays idle too long)."""
    sockets = [client, upstream]
    try:
        while True:
            readable, _, broken = select.select(sockets, [], sockets, TUNNEL_IDLE_S)
            if broken or not readable:
                return
            for sock in readable:
                data = sock.recv(BUFFER_BYTES)
                if not data:
                    return
                (upstream if sock is client else client).sendall(data)
    except OSError:
        return
    finally:
        upstream.close()
