"""Issue 4's figures: supervisor start-up overhead beyond the child's own start,
status while inference blocks and during a restart, and idle CPU."""

from __future__ import annotations

import shlex
import sys
import threading
import time

import httpx
import psutil

from tests.benchmarks.common import Figure, median, new_marker, percentile, temp_home
from tests.benchmarks.proxy_bench import PNG, status_while_blocked
from tests.harness.sidecar import start_sidecar
from tests.standin.harness import STANDIN_SCRIPT, spawn_standin

STANDIN_CMD = f"{shlex.quote(sys.executable)} {shlex.quote(str(STANDIN_SCRIPT))}"
MANAGED = {"GEOLIBRE_ML_SAMGEO_CMD": STANDIN_CMD, "GEOLIBRE_ML_RESTART_BACKOFF_S": "0.2"}


def _child_start_s() -> float:
    """The stand-in's own time from spawn to a healthy /health (5 ms polling)."""
    started = time.perf_counter()
    process = spawn_standin()
    try:
        while True:
            try:
                if (
                    httpx.get(f"{process.url}/health", timeout=1, trust_env=False).status_code
                    == 200
                ):
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.005)
    finally:
        process.close()


def _segment(client: httpx.Client, prompt: str = "trees") -> float:
    started = time.perf_counter()
    response = client.post(
        "/ml/segment/text", files={"file": ("a.png", PNG, "image/png")}, data={"prompt": prompt}
    )
    assert response.status_code == 200, response.text
    return time.perf_counter() - started


def overhead(runs: int) -> Figure:
    results = []
    for _ in range(runs):
        child = median([_child_start_s() for _ in range(3)])
        with temp_home("overhead") as home:
            sidecar = start_sidecar(home, marker=new_marker(), env=MANAGED)
            try:
                with sidecar.client() as client:
                    first = _segment(client)
                    warm = median([_segment(client) for _ in range(5)])
            finally:
                sidecar.close()
        results.append((first - child - warm, child, first, warm))
    extra, child, first, warm = sorted(results)[len(results) // 2]
    return Figure(
        "supervisor overhead, first request beyond child start",
        extra * 1000,
        "ms",
        "<= 300 ms",
        extra <= 0.3,
        f"first {first:.3f} s = child {child:.3f} s + warm {warm:.3f} s + overhead",
    )


def status_during_restart(sidecar) -> Figure:
    times: list[float] = []
    with sidecar.client() as client:
        client.post("/ml/backend/start?wait=1")
        stop = threading.Event()

        def crash() -> None:
            with sidecar.client() as other:
                other.post(
                    "/ml/segment/text",
                    files={"file": ("a.png", PNG, "image/png")},
                    data={"prompt": "standin:crash"},
                )
            stop.set()

        threading.Thread(target=crash).start()
        stop.wait(30)
        restarted_at = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            started = time.perf_counter()
            status = client.get("/ml/status").json()
            times.append((time.perf_counter() - started) * 1000)
            if status["state"] == "ready" and status["backend"]["restarts"] >= 1:
                restarted_at = time.monotonic()
                break
        assert restarted_at, "the backend did not come back"
    p99 = percentile(times, 99)
    return Figure(
        "/ml/status p99 during a restart",
        p99,
        "ms",
        "<= 50 ms",
        p99 <= 50,
        f"n={len(times)}, max {max(times):.1f} ms",
    )


def idle_cpu(sidecar, seconds: float) -> Figure:
    with sidecar.client() as client:
        client.post("/ml/backend/start?wait=1")
    proc = psutil.Process(sidecar.pid)
    before = proc.cpu_times()
    time.sleep(seconds)  # the measurement window itself
    after = proc.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    percent = used / seconds * 100
    return Figure(
        "sidecar CPU while idle with a ready backend",
        percent,
        "%",
        "< 1 %",
        percent < 1,
        f"{used * 1000:.0f} ms CPU over {seconds:g} s",
    )


def run(quick: bool) -> list[Figure]:
    figures = [overhead(1 if quick else 3)]
    with temp_home("supervise") as home:
        sidecar = start_sidecar(home, marker=new_marker(), env=MANAGED)
        try:
            seconds = 6 if quick else 30
            with sidecar.client() as client:
                client.post("/ml/backend/start?wait=1")
            figures.append(
                status_while_blocked(sidecar, seconds, f"during a {seconds} s inference")
            )
            figures.append(status_during_restart(sidecar))
            figures.append(idle_cpu(sidecar, 5 if quick else 15))
        finally:
            sidecar.close()
    return figures
