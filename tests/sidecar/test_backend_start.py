"""``POST /ml/backend/start`` answers at once (``starting``); the app follows
``/ml/status``; waiting is opt-in (``?wait=1``) with a limit (``timeout_s``)."""

from __future__ import annotations

import time

import pytest

from tests.harness.waiting import wait_until
from tests.sidecar.supervision import FAST

SLOW_START = {**FAST, "STANDIN_START_DELAY_S": "4", "STANDIN_START_PROGRESS": "output"}
PROMPT_S = 1.0  # an answer, not a wait: the slow start takes 4 s


@pytest.fixture
def managed(sidecar_factory):
    def start(**env: str):
        return sidecar_factory(env={**SLOW_START, **env})

    return start


def _state(client) -> str:
    return client.get("/ml/status").json()["state"]


def test_start_answers_at_once_and_status_follows_it_to_ready(managed):
    sidecar = managed()
    with sidecar.client(timeout_s=PROMPT_S * 5) as client:
        began = time.monotonic()
        answer = client.post("/ml/backend/start")
        took = time.monotonic() - began
        assert answer.status_code == 202, answer.text
        assert answer.json()["state"] == "starting"
        assert answer.json()["available"] is False
        assert took < PROMPT_S, f"the start route held the request {took:.1f} s"
        # A second press while it starts changes nothing and answers at once too.
        assert client.post("/ml/backend/start").json()["state"] == "starting"
        ready = wait_until(
            lambda: (s := client.get("/ml/status").json())["state"] == "ready" and s,
            timeout_s=30,
            what="the backend to be ready",
        )
        assert ready["available"] is True
        again = client.post("/ml/backend/start")
    assert again.status_code == 200 and again.json()["state"] == "ready"


def test_waiting_is_opt_in_and_gives_up_after_its_timeout(managed):
    sidecar = managed()
    with sidecar.client(timeout_s=60) as client:
        began = time.monotonic()
        answer = client.post("/ml/backend/start", params={"wait": "1", "timeout_s": "1"})
        took = time.monotonic() - began
        assert answer.status_code == 202 and answer.json()["state"] == "starting"
        assert 1.0 <= took < 3.5, took
        # Giving up on the wait did not cancel the start: waiting again sees it through.
        waited = client.post("/ml/backend/start?wait=1")
    assert waited.status_code == 200, waited.text
    assert waited.json()["state"] == "ready" and waited.json()["available"] is True


def test_a_start_that_fails_later_shows_in_status_and_fails_a_waiter(managed):
    sidecar = managed(STANDIN_FAIL_START="RuntimeError: CUDA error: no kernel image")
    with sidecar.client(timeout_s=30) as client:
        answer = client.post("/ml/backend/start")
        assert answer.status_code == 202 and answer.json()["state"] == "starting"
        failed = wait_until(
            lambda: (s := client.get("/ml/status").json())["state"] == "failed" and s,
            timeout_s=30,
            what="the failed start",
        )
        assert failed["available"] is False and failed["message"]
        waited = client.post("/ml/backend/start?wait=1")
    assert waited.status_code == 503
    assert waited.json()["detail"]


@pytest.mark.parametrize(
    "query",
    ["wait=maybe", "wait=1&timeout_s=0", "wait=1&timeout_s=soon", "wait=1&timeout_s=99999",
     "timeout_s=5"],
)  # fmt: skip
def test_a_bad_wait_is_refused_and_starts_nothing(managed, query):
    sidecar = managed()
    with sidecar.client() as client:
        answer = client.post(f"/ml/backend/start?{query}")
        assert answer.status_code == 400, answer.text
        assert "wait" in answer.json()["detail"] or "timeout_s" in answer.json()["detail"]
        assert _state(client) == "stopped"
    assert not sidecar.descendants()


def test_nothing_to_start_is_a_prompt_503(sidecar_factory):
    sidecar = sidecar_factory()  # a fresh home, no samgeo-api anywhere
    with sidecar.client(timeout_s=PROMPT_S * 5) as client:
        answer = client.post("/ml/backend/start")
        assert answer.status_code == 503
        assert "not installed" in answer.json()["detail"]
