"""The lean upstream client against tiny real servers on loopback: framing both
ways, keep-alive, credentials from the URL, and every way a backend can fail."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import h11
import pytest
from geolibre_sidecar.upstream import (
    ConnectFailed,
    ConnectionBroke,
    ReadTimedOut,
    UpstreamClient,
    parse_origin,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Seen"], Awaitable[None]]


@dataclass
class Seen:
    """What the test server saw."""

    connections: int = 0
    requests: list[tuple[h11.Request, bytes]] = field(default_factory=list)


async def read_request(reader: asyncio.StreamReader, conn: h11.Connection):
    """The next request on ``conn`` and its body, or None when the client closed."""
    head, body = None, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return head, body
        else:
            return None


def echo_server(*, close: bool = False, chunked: bool = False) -> Handler:
    """Answers each request with its own body (after ``echo:``), like a backend would."""

    async def handle(reader, writer, seen: Seen) -> None:
        conn = h11.Connection(h11.SERVER)
        while (request := await read_request(reader, conn)) is not None:
            seen.requests.append(request)
            answer = b"echo:" + request[1]
            headers = [(b"content-type", b"text/plain")]
            headers.append((b"transfer-encoding", b"chunked") if chunked else
                           (b"content-length", str(len(answer)).encode()))  # fmt: skip
            if close:
                headers.append((b"connection", b"close"))
            writer.write(conn.send(h11.Response(status_code=200, headers=headers)))
            for part in (answer[:3], answer[3:]) if chunked else (answer,):
                writer.write(conn.send(h11.Data(data=part)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            if conn.our_state is h11.MUST_CLOSE:
                break
            conn.start_next_cycle()
        writer.close()

    return handle


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()

    async def accept(reader, writer) -> None:
        seen.connections += 1
        try:
            with contextlib.suppress(ConnectionError):
                await handler(reader, writer, seen)
        finally:
            writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()


async def body_of(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def post(client: UpstreamClient, url: str, *chunks: bytes, length: bool = True):
    size = sum(map(len, chunks)) if length else None
    response = await client.post(
        url,
        "/segment/text",
        headers=[(b"content-type", b"text/plain")],
        body=body_of(*chunks),
        content_length=size,
    )
    try:
        return response.status_code, b"".join([c async for c in response.aiter_raw()])
    finally:
        await response.aclose()


def new_client(read_timeout_s: float = 10.0) -> UpstreamClient:
    return UpstreamClient(connect_timeout_s=5.0, read_timeout_s=read_timeout_s)


def test_uploads_and_answers_pass_whole_and_one_connection_serves_both():
    async def main() -> None:
        client = new_client()
        async with serving(echo_server()) as (url, seen):
            assert await post(client, url, b"first ", b"upload") == (200, b"echo:first upload")
            assert await post(client, url, b"second") == (200, b"echo:second")
        await client.aclose()
        assert seen.connections == 1, "a finished exchange must leave its connection for reuse"
        head = seen.requests[0][0]
        assert head.method == b"POST" and head.target == b"/segment/text"
        assert dict(head.headers)[b"content-length"] == b"12"

    asyncio.run(main())


def test_an_upload_of_unknown_length_goes_chunked_and_a_chunked_answer_arrives_whole():
    async def main() -> None:
        client = new_client()
        async with serving(echo_server(chunked=True)) as (url, seen):
            answer = await post(client, url, b"a" * 70_000, b"b", length=False)
        await client.aclose()
        assert answer == (200, b"echo:" + b"a" * 70_000 + b"b")
        assert dict(seen.requests[0][0].headers)[b"transfer-encoding"] == b"chunked"

    asyncio.run(main())


def test_a_backend_that_closes_after_answering_gets_a_new_connection_next_time():
    async def main() -> None:
        client = new_client()
        async with serving(echo_server(close=True)) as (url, seen):
            assert await post(client, url, b"one") == (200, b"echo:one")
            assert await post(client, url, b"two") == (200, b"echo:two")
        await client.aclose()
        assert seen.connections == 2

    asyncio.run(main())


def test_credentials_in_the_url_become_basic_auth_and_its_path_is_kept():
    async def main() -> None:
        client = new_client()
        async with serving(echo_server()) as (url, seen):
            with_credentials = url.replace("http://", "http://geo:p%40ss@") + "/samgeo/"
            assert (await post(client, with_credentials, b"x"))[0] == 200
        await client.aclose()
        head = seen.requests[0][0]
        assert head.target == b"/samgeo/segment/text"
        assert dict(head.headers)[b"authorization"] == b"Basic " + base64.b64encode(b"geo:p@ss")

    asyncio.run(main())


def test_nothing_listening_is_connect_failed_saying_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"

        async def main() -> None:
            client = new_client()
            with pytest.raises(ConnectFailed, match="connection refused"):
                await post(client, url, b"x")

        asyncio.run(main())


def misbehaving(answer: bytes | None, *, then_hang: bool = False) -> Handler:
    """Reads one request, writes ``answer`` raw, then hangs up (or waits for the client to)."""

    async def handle(reader, writer, seen: Seen) -> None:
        await read_request(reader, h11.Connection(h11.SERVER))
        if answer is not None:
            writer.write(answer)
            await writer.drain()
        if then_hang:
            await reader.read()

    return handle


HEAD_OF_100 = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n"


@pytest.mark.parametrize(
    ("handler", "error", "message"),
    [
        # an answer cut short must be an error, never a short body that looks whole
        (misbehaving(HEAD_OF_100 + b"x" * 10), ConnectionBroke, "in the middle of the answer"),
        (misbehaving(None), ConnectionBroke, "before an answer came"),
        (misbehaving(HEAD_OF_100 + b"xx", then_hang=True), ReadTimedOut, r"no data for 0\.3 s"),
    ],
    ids=["cut-short", "hangs-up-without-answer", "goes-quiet-mid-answer"],
)
def test_a_backend_that_breaks_off_is_an_upstream_error_saying_how(handler, error, message):
    async def main() -> None:
        client = new_client(read_timeout_s=0.3)
        async with serving(handler) as (url, _seen):
            with pytest.raises(error, match=message):
                await post(client, url, b"x")

    asyncio.run(main())


def test_an_error_from_the_upload_itself_propagates_and_the_connection_is_dropped():
    class Refused(Exception):
        pass

    async def refusing() -> AsyncIterator[bytes]:
        yield b"part"
        raise Refused

    async def main() -> None:
        client = new_client()
        async with serving(echo_server()) as (url, seen):
            with pytest.raises(Refused):
                await client.post(url, "/x", headers=[], body=refusing(), content_length=None)
            assert await post(client, url, b"after") == (200, b"echo:after")
        await client.aclose()
        # The half-sent request's connection must not carry the next request.
        assert seen.connections == 2
        assert [body for _head, body in seen.requests] == [b"after"]

    asyncio.run(main())


@pytest.mark.parametrize(
    ("url", "host_header", "port"),
    [
        ("http://127.0.0.1:8000", b"127.0.0.1:8000", 8000),
        ("https://gpu.example.org", b"gpu.example.org", 443),
        ("http://[::1]:9000/", b"[::1]:9000", 9000),
    ],
)
def test_origins_carry_the_host_header_a_server_expects(url, host_header, port):
    origin = parse_origin(url)
    assert (origin.host_header, origin.port, origin.authorization) == (host_header, port, None)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_an_https_backend_with_an_untrusted_certificate_is_refused_saying_tls(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def main() -> None:
        async def accept(reader, writer) -> None:
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await reader.read()
            writer.close()

        server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        client = new_client()
        try:
            with pytest.raises(ConnectFailed, match="TLS failed: CERTIFICATE_VERIFY_FAILED"):
                await post(client, f"https://127.0.0.1:{port}", b"x")
        finally:
            server.close()

    asyncio.run(main())
