"""Hostile input to the install API: every field is checked before anything runs,
a refused request changes nothing, and the event stream survives any Last-Event-ID."""

from __future__ import annotations

import httpx
import pytest

from tests.sidecar.test_install_api import read_events


@pytest.fixture
def sidecar(sidecar_factory):
    return sidecar_factory()


def finished_failed_install(sidecar, tmp_path) -> list[dict]:
    """A real install that fails fast (a damaged bundle), followed to its end."""
    damaged = tmp_path / "damaged-bundle.tar"
    damaged.write_bytes(b"not a bundle")
    with sidecar.client() as client:
        started = client.post("/ml/backend/install", json={"bundle": str(damaged)})
    assert started.status_code == 202, started.text
    events = read_events(sidecar)
    assert events[-1]["event"] == "end" and events[-1]["state"] == "failed"
    return events


BAD_CHARACTERS = [
    (b'{"checkpoint": "/data/a\\u0000b"}', "checkpoint"),
    (b'{"build": "\\ud800"}', "build"),
    (b'{"bundle": "/tmp/\\udfff.tar"}', "bundle"),
    (b'{"token": "hf_abc\\u0000def"}', "token"),
    (b'{"checkpoint": "relative/sam3.pt"}', "checkpoint"),
    (b'{"model": "facebook/\\u0000sam3.1"}', "model"),
]


def test_bad_characters_are_422_and_leave_no_job(sidecar, tmp_path):
    with sidecar.client() as client:
        for body, field in BAD_CHARACTERS:
            refused = client.post(
                "/ml/backend/install", content=body, headers={"Content-Type": "application/json"}
            )
            assert refused.status_code == 422, (body, refused.text)
            assert refused.json()["detail"].startswith(field)
            assert client.get("/ml/backend/install").json()["state"] == "none"
            assert client.delete("/ml/backend/install").status_code == 409
    # Nothing is stuck: the next install starts.
    finished_failed_install(sidecar, tmp_path)


OPTION_LIKE = [("checkpoint", "-h"), ("build", "--help"), ("bundle", "--force"), ("build", "a -v"),
               ("model", "--force")]  # fmt: skip


def test_values_never_become_installer_options(sidecar):
    with sidecar.client() as client:
        for field, value in OPTION_LIKE:
            refused = client.post("/ml/backend/install", json={field: value})
            assert refused.status_code == 422, refused.text
            assert refused.json()["detail"].startswith(field)
            assert "usage:" not in refused.text
            assert client.get("/ml/backend/install").json()["state"] == "none"


def test_cancel_after_a_finished_install_signals_nothing(sidecar, tmp_path):
    finished_failed_install(sidecar, tmp_path)
    with sidecar.client() as client:
        assert client.delete("/ml/backend/install").status_code == 409
        assert client.get("/ml/backend/install").json()["state"] == "failed"


def test_deeply_nested_install_body_is_422(sidecar):
    deep = b"[" * 5000 + b"]" * 5000
    with sidecar.client() as client:
        refused = client.post(
            "/ml/backend/install", content=deep, headers={"Content-Type": "application/json"}
        )
    assert refused.status_code == 422, refused.text
    assert "Traceback" not in sidecar.stderr() and "RecursionError" not in sidecar.stderr()


def test_any_last_event_id_replays_in_order_and_ends_cleanly(sidecar, tmp_path):
    events = finished_failed_install(sidecar, tmp_path)
    with httpx.Client(base_url=sidecar.url, trust_env=False, timeout=30) as client:
        for last_id in ["-1", "-100", "abc", "²", "9" * 40, "0x1", "1e3"]:
            headers = {"X-GeoLibre-Token": sidecar.token, "Last-Event-ID": last_id.encode()}
            # A stream without its terminating chunk raises here (httpx.RemoteProtocolError).
            replay = client.get("/ml/backend/install/events", headers=headers)
            assert replay.status_code == 200
            ids = [int(ln[4:]) for ln in replay.text.splitlines() if ln.startswith("id: ")]
            assert ids == [e["id"] for e in events], f"Last-Event-ID {last_id!r}: all, in order"
    assert "Traceback" not in sidecar.stderr()
