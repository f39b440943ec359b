"""Loopback servers for the network tests: a PEP 503 package index (HTTP or HTTPS)
and a certificate authority made with the ``openssl`` command line.

The index serves a folder of wheels the way a mirror (devpi, Artifactory, a
PyPI proxy) does: ``/simple/`` lists projects, ``/simple/<project>/`` links
each file with its ``#sha256=``, ``/files/<name>`` serves it. ``omit`` makes
it a mirror that lacks some projects (404, as mirrors answer). Every request
is logged for the tests to inspect.
"""

from __future__ import annotations

import hashlib
import html
import re
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.harness.background_server import BackgroundServer

OPENSSL_TIMEOUT_S = 60.0
WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-[^-]+-")


def project_name(filename: str) -> str:
    """The PEP 503 name of the project a wheel file belongs to."""
    match = WHEEL_NAME.match(filename)
    raw = match.group("name") if match else filename
    return re.sub(r"[-_.]+", "-", raw).lower()


@dataclass(frozen=True)
class CertAuthority:
    """A certificate authority and one server certificate it signed (loopback names)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        return context


def make_test_ca(folder: Path) -> CertAuthority:
    """A CA (``ca.pem``) and a server certificate for 127.0.0.1, 127.0.0.2 and localhost."""
    if shutil.which("openssl") is None:
        import pytest

        pytest.skip("the openssl command is needed to make a test certificate authority")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = folder / "ca.key", folder / "ca.pem"
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.pem"
    ext = folder / "server.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,IP:127.0.0.2,DNS:localhost\n",
        encoding="ascii",
    )

    def openssl(*args: str) -> None:
        subprocess.run(
            ["openssl", *args], check=True, capture_output=True, timeout=OPENSSL_TIMEOUT_S
        )

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=GeoLibre Test Corporate Root", "-keyout", str(ca_key),
            "-out", str(ca_cert), "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(ext),
            "-out", str(cert))  # fmt: skip
    return CertAuthority(ca_cert=ca_cert, server_cert=cert, server_key=key)


@dataclass(frozen=True)
class IndexRequest:
    method: str
    path: str
    status: int


class PackageIndex(BackgroundServer[IndexRequest]):
    """A PEP 503 simple index of ``wheels`` on a loopback address (HTTPS with ``tls``)."""

    def __init__(
        self,
        wheels: Path,
        *,
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        omit: tuple[str, ...] = (),
    ) -> None:
        self.wheels = wheels
        self.omit = {re.sub(r"[-_.]+", "-", name).lower() for name in omit}
        self.host = host
        self.scheme = "https" if tls is not None else "http"
        super().__init__(self._make_server(tls))

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The simple index URL (what UV_INDEX_URL and the torch index take)."""
        return f"{self.scheme}://{self.netloc}/simple"

    # Serving -----------------------------------------------------------------
    def _projects(self) -> dict[str, list[Path]]:
        found: dict[str, list[Path]] = {}
        for path in sorted(self.wheels.glob("*.whl")):
            name = project_name(path.name)
            if name not in self.omit:
                found.setdefault(name, []).append(path)
        return found

    def _make_server(self, tls: ssl.SSLContext | None) -> ThreadingHTTPServer:
        index = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                index._handle(self, head=False)

            def do_HEAD(self) -> None:
                index._handle(self, head=True)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((self.host, 0), Handler)
        server.daemon_threads = True
        if tls is not None:
            # Handshake in the handler thread: a client that refuses our certificate
            # must not block accept() for the next one.
            server.socket = tls.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        return server

    def _handle(self, handler: BaseHTTPRequestHandler, *, head: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        status = 404
        body, content_type = b"", "text/plain"
        projects = self._projects()
        parts = [p for p in path.split("/") if p]
        if parts == ["simple"]:
            links = "".join(f'<a href="/simple/{n}/">{n}</a>\n' for n in projects)
            status, body, content_type = 200, _page("Simple index", links), "text/html"
        elif len(parts) == 2 and parts[0] == "simple":
            name = re.sub(r"[-_.]+", "-", parts[1]).lower()
            files = projects.get(name)
            if files is not None:
                links = "".join(
                    f'<a href="/files/{html.escape(f.name)}#sha256={_sha256(f)}">'
                    f"{html.escape(f.name)}</a>\n"
                    for f in files
                )
                status, body, content_type = 200, _page(f"Links for {name}", links), "text/html"
        elif len(parts) == 2 and parts[0] == "files":
            match = next((f for fs in projects.values() for f in fs if f.name == parts[1]), None)
            if match is not None:
                status, body = 200, match.read_bytes()
                content_type = "application/octet-stream"
        self.record(IndexRequest(handler.command, path, status))
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if not head:
                handler.wfile.write(body)
        except OSError:
            handler.close_connection = True


def _page(title: str, links: str) -> bytes:
    return (
        f"<!DOCTYPE html>\n<html><head><title>{title}</title></head><body>\n"
        f"<h1>{title}</h1>\n{links}</body></html>\n"
    ).encode()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
