"""Limits that hold before any request reaches the app: Host, request target,
header size and time, and the connection cap. Raw sockets, because a polite
client library would never send these requests."""

from __future__ import annotations

import asyncio
import errno
import json
import select
import socket
import sys
import time

import psutil
import pytest

from tests.harness.sidecar import launcher_path
from tests.harness.waiting import wait_until

HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def exchange(sidecar, raw: bytes, *, timeout_s: float = 10.0) -> bytes:
    """Send ``raw`` and read until the sidecar closes the connection."""
    with socket.create_connection(("127.0.0.1", sidecar.ready["port"]), timeout=timeout_s) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def closed_by_peer(sock: socket.socket) -> bool:
    """An idle socket that became readable was closed by the sidecar (it sent nothing)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


@pytest.fixture
def sidecar(sidecar_factory):
    return sidecar_factory(
        env={"GEOLIBRE_ML_HEADER_TIMEOUT_S": "1", "GEOLIBRE_ML_MAX_CONNECTIONS": "50"}
    )


def get(host_lines: str, token: str, target: str = "/ml/status") -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\n{host_lines}X-GeoLibre-Token: {token}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


FOREIGN_HOSTS = [
    "Host: 127.0.0.1:1@evil.com\r\n",
    "Host: [::1]evil.com\r\n",
    "Host: evil.com\r\n",
    "Host: 127.0.0.1 evil.com\r\n",
    "Host: 127.0.0.1\r\nHost: evil.com\r\n",
    "Host: 127.0.0.1\r\nHost: 127.0.0.1\r\n",
    "",
]


def test_only_one_well_formed_host_of_ours_passes(sidecar):
    for host_lines in FOREIGN_HOSTS:
        answer = exchange(sidecar, get(host_lines, sidecar.token))
        assert status_of(answer) == 400, (host_lines, answer)
        assert b"Host" in answer
    absolute = get("Host: 127.0.0.1\r\n", sidecar.token, "http://evil.com/ml/status")
    answer = exchange(sidecar, absolute)
    assert status_of(answer) == 400, answer
    assert b"must be a path" in answer
    for host in ["127.0.0.1:8765", "localhost", "[::1]:1", "[0:0::1]"]:
        answer = exchange(sidecar, get(f"Host: {host}\r\n", sidecar.token))
        assert status_of(answer) == 200, (host, answer)


def test_endless_header_is_431_and_memory_stays_flat(sidecar):
    proc = psutil.Process(sidecar.pid)
    before = proc.memory_info().rss
    socks = []
    for _ in range(8):
        sock = socket.create_connection(("127.0.0.1", sidecar.ready["port"]), timeout=10)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Junk: ")
        socks.append(sock)
    answers = []
    for sock in socks:
        answer = b""
        try:
            for _ in range(64):  # up to 4 MiB each, unless the sidecar stops us
                sock.sendall(b"a" * 65536)
        except OSError:
            pass  # closed on us: what we want
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
        answers.append(answer)
        sock.close()
    assert all(a.startswith(b"HTTP/1.1 431") for a in answers if a), answers
    assert any(answers), "at least one client reads its 431 before the reset"
    assert proc.memory_info().rss - before < 32 * 1024 * 1024
    assert "Traceback" not in sidecar.stderr()


def test_slow_headers_get_408_and_silent_connections_are_closed(sidecar):
    started = time.monotonic()
    slow = exchange(sidecar, b"GET /health HTTP/1.1\r\nHost: 127.0")
    assert status_of(slow) == 408, slow
    assert b"did not arrive within 1 s" in slow
    silent = exchange(sidecar, b"")
    assert silent == b"" or status_of(silent) == 408
    assert time.monotonic() - started < 8


def test_idle_connections_beyond_the_cap_are_closed_and_health_still_answers(sidecar):
    port = sidecar.ready["port"]
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(80)]
    try:
        answer = exchange(sidecar, HEALTH)
        assert status_of(answer) == 200
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["status"] == "ok"
        closed = wait_until(
            lambda: sum(closed_by_peer(s) for s in idle) >= 30 or None,
            timeout_s=5,
            what="the oldest idle connections to be closed",
        )
        assert closed
        held = [
            c for c in psutil.Process(sidecar.pid).net_connections() if c.status == "ESTABLISHED"
        ]
        assert len(held) <= 50 + 2  # the cap, plus the sidecar's own backend probes
    finally:
        for sock in idle:
            sock.close()
    assert "Traceback" not in sidecar.stderr()


LOW_DESCRIPTORS = (
    "import os, resource, sys\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def test_a_flood_of_connections_under_a_low_descriptor_limit(sidecar_factory):
    # 1100 connections against 300 descriptors: the cap (300 less a reserve) closes
    # the oldest idle ones, /health answers, and stderr does not fill with tracebacks.
    sidecar = sidecar_factory(
        cmd=[sys.executable, "-c", LOW_DESCRIPTORS, launcher_path()],
        env={"GEOLIBRE_ML_HEADER_TIMEOUT_S": "30"},
    )
    port = sidecar.ready["port"]
    flood = []
    try:
        for _ in range(1100):
            flood.append(socket.create_connection(("127.0.0.1", port)))
            if len(flood) % 275 == 0:
                answer = exchange(sidecar, HEALTH)
                assert status_of(answer) == 200
    finally:
        for sock in flood:
            sock.close()
    assert len(sidecar.stderr()) < 20_000, sidecar.stderr()[-2000:]
    assert "Traceback" not in sidecar.stderr()


def test_accept_errors_are_summarised_not_logged_each_time(caplog):
    from geolibre_bridge.connections import AcceptErrorSummary

    summary = AcceptErrorSummary(interval_s=60)
    loop = asyncio.new_event_loop()
    try:
        error = OSError(errno.EMFILE, "Too many open files")
        for _ in range(1000):
            context = {"message": "socket.accept() out of system resource", "exception": error}
            summary(loop, context)
    finally:
        loop.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "geolibre.connections"]
    assert len(lines) == 1 and "Too many open files" in lines[0]
    assert summary.count == 1000


@pytest.mark.parametrize("descriptors", [256, 1024, 4096, 20000, 1048576])
def test_the_cap_and_two_accept_batches_fit_in_the_descriptor_limit(descriptors):
    from geolibre_bridge.connections import descriptor_budget

    cap, backlog = descriptor_budget(1000, descriptors)
    assert 8 <= cap <= 1000 and backlog >= 16
    assert cap + 2 * backlog + min(256, descriptors // 4) <= descriptors
