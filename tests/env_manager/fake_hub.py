"""A fake Hugging Face Hub: a real HTTP server on loopback for the weights tests.

It answers what huggingface_hub and geolibre_env.hub ask: ``HEAD``/``GET
/{repo}/resolve/{rev}/{file}`` (``/datasets/...`` for datasets) with
``X-Repo-Commit``, ``ETag``/``X-Linked-Etag``, ``X-Linked-Size`` and, for LFS
files, a 302 to a second server (the "CDN", another port, so another host for
the client); ``GET /api/{models,datasets}/{repo}/revision/{rev}``; ``Range``
requests (206). Gated repos answer 401 without a valid token and 403 for a
token that has not been granted access, with the Hub's ``X-Error-Code``.
Faults per file: ``fail_after_bytes`` (drop the connection mid-body, the first
``fail_times`` GETs), ``wrong_sha`` (serve altered bytes under the real
checksum), ``rate_bytes_per_s`` (slow), ``declared_size`` (lie about the size),
``ignore_range`` (answer 200 to a Range request), ``expire_links_on_drop``
(signed CDN links issued so far answer 403 after a drop, as expired ones do).
Every request is logged for the tests to inspect.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

RESOLVE = re.compile(
    r"^/(?:(?P<dataset>datasets)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$"
)
LISTING = re.compile(
    r"^/api/(?P<kind>models|datasets)/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)$"
)
CDN = re.compile(r"^/cdn/(?P<sha>[0-9a-f]{64})$")
RANGE = re.compile(r"^bytes=(\d+)-$")
SLOW_PIECE_BYTES = 8192
CDN_HOST = "127.0.0.2"  # Linux routes all of 127.0.0.0/8 to loopback
LOG_SETTLE_S = 2.0


@dataclass
class FakeFile:
    content: bytes
    lfs: bool
    fail_after_bytes: int | None = None
    fail_times: int = 1
    wrong_sha: bool = False
    rate_bytes_per_s: int | None = None
    declared_size: int | None = None
    ignore_range: bool = False  # answer 200 with the whole file, as some proxies do
    expire_links_on_drop: bool = False  # a drop also invalidates the signed CDN links

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def git_sha1(self) -> str:
        header = f"blob {len(self.content)}\0".encode()
        return hashlib.sha1(header + self.content).hexdigest()

    @property
    def size(self) -> int:
        return self.declared_size if self.declared_size is not None else len(self.content)


@dataclass
class FakeRepo:
    repo_id: str
    repo_type: str
    files: dict[str, FakeFile]
    gated: bool = False
    granted_tokens: set[str] = field(default_factory=set)
    commit: str = field(default_factory=lambda: secrets.token_hex(20))


@dataclass(frozen=True)
class LoggedRequest:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    headers: dict[str, str]
    status: int
    body_bytes: int  # bytes of body actually written

    @property
    def range(self) -> str | None:
        return self.headers.get("range")


class FakeHub:
    """Two loopback servers (hub + CDN) sharing one registry and one request log."""

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self.scheme = "https" if tls is not None else "http"
        self._tls = tls
        self.repos: dict[tuple[str, str], FakeRepo] = {}
        self.valid_tokens: set[str] = set()
        self.requests: list[LoggedRequest] = []
        self.link_epoch = 0  # CDN links signed in an older epoch have expired
        self._lock = threading.Condition()
        self._handling = 0  # requests being answered: logged once their answer is sent
        self._servers = [self._server("hub"), self._server("cdn")]
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            for s in self._servers
        ]
        for thread in self._threads:
            thread.start()

    # Set-up ----------------------------------------------------------------
    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        repo_type: str = "model",
        lfs: tuple[str, ...] = (),
        gated: bool = False,
    ) -> FakeRepo:
        repo = FakeRepo(
            repo_id,
            repo_type,
            {name: FakeFile(data, lfs=name in lfs) for name, data in files.items()},
            gated=gated,
        )
        self.repos[(repo_type, repo_id)] = repo
        return repo

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"{self.scheme}://{CDN_HOST}:{self._servers[1].server_address[1]}"

    def log(self, *, server: str | None = None, method: str | None = None) -> list[LoggedRequest]:
        """The requests answered so far. A client can have read a whole answer before
        the handler thread logs it, so wait (briefly) for answers still being sent."""
        with self._lock:
            self._lock.wait_for(lambda: self._handling == 0, timeout=LOG_SETTLE_S)
            return [
                r
                for r in self.requests
                if (server is None or r.server == server) and (method is None or r.method == method)
            ]

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    # Serving -----------------------------------------------------------------
    def _server(self, role: str) -> ThreadingHTTPServer:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_HEAD(self) -> None:
                hub._handle(self, role, head=True)

            def do_GET(self) -> None:
                hub._handle(self, role, head=False)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the request log is ours; stderr stays quiet

        server = ThreadingHTTPServer((CDN_HOST if role == "cdn" else "127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if self._tls is not None:
            # Handshake in the handler thread, so a refused certificate cannot block accept().
            server.socket = self._tls.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        # A client that hangs up mid-body is a scenario here, not a server error.
        server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        return server

    def _handle(self, handler: BaseHTTPRequestHandler, role: str, *, head: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        status, body_bytes = 500, 0
        with self._lock:
            self._handling += 1
        try:
            if role == "cdn" and (match := CDN.match(path)):
                signature = parse_qs(urlsplit(handler.path).query).get("X-Amz-Signature", [""])
                if signature[0] != f"epoch{self.link_epoch}":
                    status = self._reply(handler, 403, {})  # "Request has expired"
                else:
                    status, body_bytes = self._serve_cdn(handler, match["sha"], head=head)
            elif role == "hub" and (match := RESOLVE.match(path)):
                status, body_bytes = self._serve_resolve(handler, match, headers, head=head)
            elif role == "hub" and not head and (match := LISTING.match(path)):
                status, body_bytes = self._serve_listing(handler, match, headers)
            else:
                status = self._reply(handler, 404, {"X-Error-Code": "EntryNotFound"})
        finally:
            with self._lock:
                self.requests.append(
                    LoggedRequest(role, handler.command, path, headers, status, body_bytes)
                )
                self._handling -= 1
                self._lock.notify_all()

    def _access(self, repo: FakeRepo, headers: dict[str, str]) -> tuple[int, str] | None:
        auth = headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        if token is not None and token not in self.valid_tokens:
            return 401, "Invalid credentials in Authorization header"
        if repo.gated and token is None:
            return 401, f"Access to model {repo.repo_id} is restricted. Please log in."
        if repo.gated and token not in repo.granted_tokens:
            return 403, (
                f"Access to model {repo.repo_id} is restricted and you are not in the"
                " authorized list."
            )
        return None

    def _serve_resolve(
        self,
        handler: BaseHTTPRequestHandler,
        match: re.Match[str],
        headers: dict[str, str],
        *,
        head: bool,
    ) -> tuple[int, int]:
        repo_type = "dataset" if match["dataset"] else "model"
        repo = self.repos.get((repo_type, match["repo"]))
        if repo is None:
            return self._reply(handler, 401, {"X-Error-Code": "RepoNotFound"}), 0
        if (denied := self._access(repo, headers)) is not None:
            code = "GatedRepo" if repo.gated else ""
            refusal = {"X-Error-Code": code, "X-Error-Message": denied[1]}
            return self._reply(handler, denied[0], refusal), 0
        if match["rev"] not in ("main", repo.commit):
            return self._reply(handler, 404, {"X-Error-Code": "RevisionNotFound"}), 0
        file = repo.files.get(match["file"])
        if file is None:
            absent = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.commit}
            return self._reply(handler, 404, absent), 0
        common = {"X-Repo-Commit": repo.commit}
        if file.lfs:
            signed = f"X-Amz-Signature=epoch{self.link_epoch}"
            extra = {
                "X-Linked-Etag": f'"{file.sha256}"',
                "X-Linked-Size": str(file.size),
                "ETag": f'"{file.git_sha1}"',  # the pointer file's etag, as on the Hub
                "Location": f"{self.cdn_url}/cdn/{file.sha256}?{signed}",
            }
            return self._reply(handler, 302, common | extra), 0
        common["ETag"] = f'"{file.git_sha1}"'
        return self._send_file(handler, file, headers, common, head=head)

    def _serve_cdn(
        self, handler: BaseHTTPRequestHandler, sha: str, *, head: bool
    ) -> tuple[int, int]:
        for repo in self.repos.values():
            for file in repo.files.values():
                if file.lfs and file.sha256 == sha:
                    headers = {k.lower(): v for k, v in handler.headers.items()}
                    return self._send_file(handler, file, headers, {}, head=head)
        return self._reply(handler, 404, {}), 0

    def _serve_listing(
        self, handler: BaseHTTPRequestHandler, match: re.Match[str], headers: dict[str, str]
    ) -> tuple[int, int]:
        repo_type = "dataset" if match["kind"] == "datasets" else "model"
        repo = self.repos.get((repo_type, match["repo"]))
        if repo is None or match["rev"] not in ("main", repo.commit):
            return self._reply(handler, 404, {"X-Error-Code": "RepoNotFound"}), 0
        body = json.dumps(
            {
                "id": repo.repo_id,
                "sha": repo.commit,
                "gated": "manual" if repo.gated else False,
                "siblings": [{"rfilename": name} for name in repo.files],
            }
        ).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        return 200, len(body)

    def _send_file(
        self,
        handler: BaseHTTPRequestHandler,
        file: FakeFile,
        headers: dict[str, str],
        extra: dict[str, str],
        *,
        head: bool,
    ) -> tuple[int, int]:
        content = file.content
        if file.wrong_sha:
            content = bytes([content[0] ^ 0xFF]) + content[1:]
        start = 0
        if not file.ignore_range and (match := RANGE.match(headers.get("range", ""))):
            start = int(match.group(1))
            if start >= len(content):
                return self._reply(handler, 416, {"Content-Range": f"bytes */{len(content)}"}), 0
        body = content[start:]
        status = 206 if start else 200
        handler.send_response(status)
        for key, value in extra.items():
            handler.send_header(key, value)
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Accept-Ranges", "bytes")
        handler.end_headers()
        if head:
            return status, 0
        limit = len(body)
        if file.fail_after_bytes is not None and file.fail_times > 0:
            file.fail_times -= 1
            limit = min(limit, file.fail_after_bytes)
        sent = self._write(handler, body[:limit], file.rate_bytes_per_s)
        if limit < len(body):
            if file.expire_links_on_drop:
                self.link_epoch += 1
            # Cut the connection mid-body (FIN after the bytes: they all arrive).
            handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_WR)
            handler.close_connection = True
        return status, sent

    @staticmethod
    def _write(handler: BaseHTTPRequestHandler, data: bytes, rate: int | None) -> int:
        sent = 0
        piece = SLOW_PIECE_BYTES if rate else len(data) or 1
        started = time.monotonic()
        try:
            for offset in range(0, len(data), piece):
                chunk = data[offset : offset + piece]
                handler.wfile.write(chunk)
                handler.wfile.flush()
                sent += len(chunk)
                if rate:
                    # Pace to the rate: sleep until this many bytes are "due".
                    delay = started + sent / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
        except OSError:
            handler.close_connection = True  # the client hung up (cancel)
        return sent

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str]) -> int:
        handler.send_response(status)
        for key, value in headers.items():
            if value:
                handler.send_header(key, value)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return status


VOCAB = "bpe_simple_vocab_16e6.txt.gz"
SAM3_REPO = "facebook/sam3"
VOCAB_REPO = "giswqs/geospatial"


def sam3_hub(
    token: str,
    files: dict[str, bytes],
    *,
    lfs: tuple[str, ...],
    vocab: bytes,
    vocab_lfs: bool = False,
) -> FakeHub:
    """A Hub with the gated SAM 3 repo (its licence accepted for ``token``) and the
    dataset that holds samgeo's tokenizer vocabulary, as the real Hub has them."""
    hub = FakeHub()
    hub.valid_tokens.add(token)
    hub.add_repo(SAM3_REPO, files, lfs=lfs, gated=True).granted_tokens.add(token)
    hub.add_repo(VOCAB_REPO, {VOCAB: vocab}, repo_type="dataset", lfs=(VOCAB,) if vocab_lfs else ())
    return hub
