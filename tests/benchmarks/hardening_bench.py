"""Issue 14's figures: the fuzzer's counts, connections held at the cap, /health
under 1000 idle connections, and the sidecar's memory under endless headers."""

from __future__ import annotations

import resource
import select
import socket
import time

import httpx
import psutil

from tests.benchmarks.common import Figure, new_marker, percentile, temp_home
from tests.harness.fuzz import choose_seed, run_fuzz
from tests.harness.sidecar import Sidecar, start_sidecar
from tests.standin.harness import make_png, start_standin

CAP = 1000  # the sidecar's default GEOLIBRE_ML_MAX_CONNECTIONS


def _descriptors(wanted: int) -> int:
    """Raise this process's open-files limit towards ``wanted``; what we may open."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft - 64  # our own files, pipes and the client


def _fuzz(sidecar: Sidecar, requests: int) -> list[Figure]:
    seed = choose_seed()
    started = time.monotonic()
    report = run_fuzz(sidecar.ready["port"], sidecar.token, make_png(64, 48), seed=seed,
                      requests=requests)  # fmt: skip
    took = time.monotonic() - started
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(report.counts().items()))
    failures = report.failures()
    traceback = "Traceback" in sidecar.stderr()
    return [
        Figure(
            "fuzz: requests sent",
            len(report.outcomes),
            "req",
            note=f"seed {seed}, {took:.0f} s; {counts}",
        ),
        Figure(
            "fuzz: sidecar 5xx, slow answers, tracebacks",
            len(failures) + traceback,
            "",
            "0",
            not failures and not traceback and sidecar.proc.poll() is None,
            failures[0][:80] if failures else "",
        ),
    ]


def _open_idle(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]


def _still_open(socks: list[socket.socket]) -> int:
    """Idle sockets the sidecar has not closed (a closed one becomes readable: EOF)."""
    poller = select.poll()  # not select(): descriptors here go past 1024
    for sock in socks:
        poller.register(sock, select.POLLIN)
    return len(socks) - len(poller.poll(0))


def _held_at_cap(sidecar: Sidecar, opened: int) -> Figure:
    socks = _open_idle(sidecar.ready["port"], opened)
    try:
        deadline = time.monotonic() + 5
        held = _still_open(socks)
        while held > CAP and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the sidecar's progress, bounded by the deadline
            held = _still_open(socks)
    finally:
        for sock in socks:
            sock.close()
    return Figure(f"idle connections held of {opened} opened", held, "conn", f"<= {CAP}",
                  held <= CAP)  # fmt: skip


def _health_p99_under_idle(sidecar: Sidecar, idle: int, samples: int) -> Figure:
    socks = _open_idle(sidecar.ready["port"], idle)
    try:
        times = []
        with httpx.Client(base_url=sidecar.url, trust_env=False, timeout=5) as client:
            client.get("/health")
            for _ in range(samples):
                began = time.perf_counter()
                client.get("/health").raise_for_status()
                times.append(time.perf_counter() - began)
    finally:
        for sock in socks:
            sock.close()
    p99 = percentile(times, 99) * 1000
    return Figure(f"/health p99 under {idle} idle connections", p99, "ms", "< 50", p99 < 50)


def _rss_under_endless_headers(sidecar: Sidecar, clients: int, seconds: float) -> Figure:
    proc = psutil.Process(sidecar.pid)
    before = proc.memory_info().rss
    socks = []
    for _ in range(clients):
        sock = socket.create_connection(("127.0.0.1", sidecar.ready["port"]))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        sock.setblocking(False)
        socks.append(sock)
    peak = before
    deadline = time.monotonic() + seconds
    chunk = b"a" * 65536
    while time.monotonic() < deadline and socks:
        for sock in list(socks):
            try:
                sock.send(chunk)
            except BlockingIOError:
                pass
            except OSError:
                socks.remove(sock)  # the sidecar closed it (431): that is the point
        peak = max(peak, proc.memory_info().rss)
    for sock in socks:
        sock.close()
    grew = (peak - before) / 1e6
    note = f"{clients} clients for {seconds:g} s; {before / 1e6:.0f} MB before"
    return Figure("RSS growth under endless headers", grew, "MB", "< 32", grew < 32, note)


def run(quick: bool) -> list[Figure]:
    room = _descriptors(1700)
    opened = min(1500, room)
    idle = min(1000, room)
    with start_standin() as standin, temp_home("hardening") as home:
        sidecar = start_sidecar(
            home,
            marker=new_marker(),
            env={"GEOLIBRE_ML_SAMGEO_URL": standin.url, "UV_OFFLINE": "1",
                 "HF_ENDPOINT": "http://127.0.0.1:9"},
        )  # fmt: skip
        try:
            figures = _fuzz(sidecar, 2000 if quick else 5000)
            figures.append(_held_at_cap(sidecar, opened))
            figures.append(_health_p99_under_idle(sidecar, idle, 200 if quick else 1000))
            figures.append(_rss_under_endless_headers(sidecar, 8, 2 if quick else 5))
        finally:
            sidecar.close()
    return figures
