"""Supervising a launched samgeo-api (the stand-in) as real processes: it starts on
demand (once, however many requests ask), on the Start/Stop buttons, unloads when idle,
bounds its model cache, and a shutdown answers what is waiting and leaves nothing."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import psutil
import pytest

from tests.harness.processes import assert_nothing_left as assert_leftovers_gone
from tests.harness.processes import wait_gone
from tests.harness.waiting import wait_until
from tests.sidecar.supervision import assert_nothing_left, segment


def test_concurrent_first_requests_start_exactly_one_backend(managed, marker):
    sidecar = managed()
    results: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        with sidecar.client() as client:
            status = segment(client).status_code
        with lock:
            results.append(status)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [200] * 4
    guards = [
        p
        for p in psutil.Process(sidecar.pid).children()
        if "process_guard" in " ".join(p.cmdline())
    ]
    assert len(guards) == 1
    status = sidecar.status()
    assert status["available"] and status["state"] == "ready"
    assert status["backend"]["pid"] == guards[0].pid
    assert status["version"] == "1.4.2"
    assert_nothing_left(sidecar, marker)


def test_start_and_stop_buttons(managed, marker):
    sidecar = managed()
    with sidecar.client() as client:
        started = client.post("/ml/backend/start?wait=1").json()
        assert started["state"] == "ready" and started["available"] is True
        pid = started["backend"]["pid"]
        stopped = client.post("/ml/backend/stop").json()
    assert stopped["state"] == "stopped" and stopped["available"] is False
    wait_gone([pid], timeout_s=5)
    assert_nothing_left(sidecar, marker)


def test_an_idle_backend_is_unloaded_and_comes_back_on_demand(managed, marker):
    sidecar = managed(GEOLIBRE_ML_IDLE_UNLOAD_S="1")
    with sidecar.client() as client:
        assert segment(client).status_code == 200
        pid = client.get("/ml/status").json()["backend"]["pid"]
        status = wait_until(
            lambda: (s := client.get("/ml/status").json())["state"] == "stopped" and s,
            timeout_s=10,
            what="the idle unload",
        )
        assert "idle" in status["message"]
        wait_gone([pid], timeout_s=5)
        assert segment(client).status_code == 200, "the next request starts it again"
    assert_nothing_left(sidecar, marker)


def test_new_model_variants_past_the_bound_clear_the_model_cache(managed, marker):
    sidecar = managed(GEOLIBRE_ML_MAX_MODEL_VARIANTS="2")
    with sidecar.client() as client:
        for threshold in ("0.3", "0.4", "0.3", "0.5"):
            assert segment(client, confidence_threshold=threshold).status_code == 200
        status = client.get("/ml/status").json()
        port = status["backend"]["port"]
    loaded = httpx.get(f"http://127.0.0.1:{port}/models", trust_env=False).json()["loaded"]
    assert status["backend"]["model_variants"]["clears"] == 1
    assert len(loaded) == 1, "the cache held 2 variants, was cleared, then loaded the 3rd"
    assert_nothing_left(sidecar, marker)


@pytest.mark.parametrize("how", ["post", "sigterm"])
def test_shutdown_during_a_segmentation_answers_503_and_exits_promptly(managed, marker, how):
    sidecar = managed()
    with sidecar.client() as client:
        client.post("/ml/backend/start?wait=1").raise_for_status()
    answers: list[httpx.Response | BaseException] = []

    def busy() -> None:
        with sidecar.client() as other:
            try:
                answers.append(segment(other, "standin:sleep=30"))
            except httpx.HTTPError as exc:
                answers.append(exc)

    worker = threading.Thread(target=busy)
    worker.start()
    with sidecar.client() as client:
        wait_until(lambda: client.get("/ml/status").json()["state"] == "busy", timeout_s=10)
        started = time.monotonic()
        if how == "post":
            assert client.post("/shutdown").status_code == 202
        else:
            sidecar.proc.send_signal(signal.SIGTERM)
    worker.join(timeout=10)
    answered_after = time.monotonic() - started
    # uvicorn re-raises a signal it handled once it has shut down (as test_launcher allows).
    assert sidecar.proc.wait(timeout=10) in (0, -signal.SIGTERM)
    exited_after = time.monotonic() - started
    [answer] = answers
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code == 503
    assert "shutting down" in answer.json()["detail"]
    assert answered_after < 2.0
    assert exited_after < 4.0
    assert "Traceback" not in sidecar.stderr()
    assert_leftovers_gone(marker, timeout_s=10)
