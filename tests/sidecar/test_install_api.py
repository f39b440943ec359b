"""The one-click install through the sidecar: start, server-sent progress, state,
cancel, the weights from a (fake) Hub, and then segmentation from what it built."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.conftest import offline_install_env
from tests.env_manager.fake_hub import FakeFile, FakeHub, sam3_hub
from tests.harness.waiting import wait_until
from tests.standin.harness import make_png

pytestmark = pytest.mark.slow

TOKEN = "hf_InstallTokenInstallToken0123456789"


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    files = {
        "config.json": b'{"model_type": "sam3"}\n',
        "sam3.pt": os.urandom(300_000),
        "model.safetensors": os.urandom(400_000),
        "processor_config.json": b"{}\n",
        "README.md": b"# SAM 3\n",
    }
    server = sam3_hub(TOKEN, files, lfs=("sam3.pt", "model.safetensors"), vocab=os.urandom(50_000))
    yield server
    server.close()


@pytest.fixture
def installing(sidecar_factory, wheelhouse, warm_uv_cache):
    def start(**env: str):
        return sidecar_factory(env={**offline_install_env(wheelhouse, warm_uv_cache), **env})

    return start


def read_events(sidecar, *, after: int = 0) -> list[dict]:
    """Follow the SSE stream to its end event."""
    events = []
    headers = {"X-GeoLibre-Token": sidecar.token, "Last-Event-ID": str(after)}
    with (
        httpx.Client(base_url=sidecar.url, trust_env=False, timeout=120) as client,
        client.stream("GET", "/ml/backend/install/events", headers=headers) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        block: dict[str, str] = {}
        for line in response.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if "data" in block:
                    events.append(json.loads(block["data"]))
                    if block.get("event") == "end":
                        break
                block = {}
                continue
            key, _, value = line.partition(": ")
            block[key] = value
    return events


def test_install_from_the_app_streams_progress_then_asks_for_the_weights(installing, marker):
    sidecar = installing()
    with sidecar.client() as client:
        assert client.get("/ml/status").json()["installed"] is False
        started = client.post("/ml/backend/install", json={"weights": False})
        assert started.status_code == 202 and started.json()["running"] is True
        again = client.post("/ml/backend/install", json={"weights": False})
        assert again.status_code == 409
    events = read_events(sidecar)
    phases = [e.get("phase") for e in events if e.get("event") == "progress"]
    assert {"plan", "venv", "torch", "packages", "verify", "switch", "done"} <= set(phases)
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["event"] == "end" and events[-1]["state"] == "succeeded"
    # A reconnect with Last-Event-ID gets only what it missed.
    tail = read_events(sidecar, after=len(events) - 2)
    assert [e["id"] for e in tail] == [len(events) - 1, len(events)]
    with sidecar.client() as client:
        state = client.get("/ml/backend/install").json()
        status = client.get("/ml/status").json()
        segmented = client.post(
            "/ml/segment/text",
            files={"file": ("a.png", make_png(16, 16), "image/png")},
            data={"prompt": "trees", "backend": "transformers"},
        )
    assert state["state"] == "succeeded" and state["running"] is False
    assert status["installed"] is True
    # Installed without weights: nothing can segment yet, and both say so at once.
    assert status["available"] is False and "weights" in status["message"]
    assert segmented.status_code == 503
    assert segmented.json()["cause"] == "weights_missing"
    assert segmented.json()["detail"] == status["message"]


def test_weights_come_from_the_hub_and_the_backend_then_runs_offline(installing, hub, ml_home):
    sidecar = installing(HF_ENDPOINT=hub.url, STANDIN_REQUIRE_WEIGHTS="1")
    with sidecar.client() as client:
        assert client.post("/ml/backend/install", json={"token": TOKEN}).status_code == 202
    events = read_events(sidecar)
    weight_bytes = [e for e in events if e.get("phase") == "weights" and e.get("unit") == "bytes"]
    assert weight_bytes and weight_bytes[-1]["done"] == weight_bytes[-1]["total"]
    assert events[-1]["state"] == "succeeded", events[-3:]
    with sidecar.client() as client:
        response = client.post(
            "/ml/segment/text",
            files={"file": ("a.png", make_png(16, 16), "image/png")},
            data={"prompt": "roofs", "backend": "transformers"},
        )
        status = client.get("/ml/status").json()
    assert response.status_code == 200, response.text
    pid = status["backend"]["pid"]
    samgeo = psutil.Process(pid).children()[0]
    environ = samgeo.environ()
    assert environ["HF_HUB_OFFLINE"] == "1", "a request never waits on the network"
    assert "HF_TOKEN" not in environ and TOKEN not in json.dumps(environ)
    for path in [*ml_home.rglob("*.log"), *ml_home.rglob("*.json")]:
        assert TOKEN not in path.read_text(errors="replace"), f"token leaked into {path}"
    assert TOKEN not in json.dumps(events) and TOKEN not in json.dumps(status)
    assert (ml_home / "data" / "hf-home" / "token").read_text().strip() == TOKEN


def test_the_app_fetches_another_model_with_progress_and_refuses_an_unknown_one(installing, hub):
    sam31 = {"config.json": b'{"model_type": "sam3.1"}', "sam3.1_multiplex.pt": os.urandom(250_000)}
    hub.add_repo("facebook/sam3.1", sam31, lfs=("sam3.1_multiplex.pt",), gated=True)
    hub.repos[("model", "facebook/sam3.1")].granted_tokens.add(TOKEN)
    sidecar = installing(HF_ENDPOINT=hub.url)
    with sidecar.client() as client:
        refused = client.post("/ml/backend/install", json={"model": "facebook/sam9"})
        assert refused.status_code == 422
        assert refused.json()["detail"] == (
            "model must be one of facebook/sam3, facebook/sam3.1, not 'facebook/sam9'."
        )
        assert client.get("/ml/backend/install").json()["state"] == "none"
        assert not hub.log(), "nothing was fetched for a refused request"
        started = client.post(
            "/ml/backend/install", json={"token": TOKEN, "model": "facebook/sam3.1"}
        )
        assert started.status_code == 202, started.text
    events = read_events(sidecar)
    assert events[-1]["state"] == "succeeded", events[-3:]
    weight_bytes = [e for e in events if e.get("phase") == "weights" and e.get("unit") == "bytes"]
    shown = {e["extra"].get("file") for e in weight_bytes}
    assert {"config.json", "sam3.1_multiplex.pt"} <= shown
    assert weight_bytes[-1]["done"] == weight_bytes[-1]["total"] >= sum(map(len, sam31.values()))
    downloads = {r.path for r in hub.log() if "/resolve/" in r.path}
    assert downloads and not [p for p in downloads if "/facebook/sam3/" in p], "only sam3.1's"
    with sidecar.client() as client:
        models = client.get("/ml/status").json()["weights"]["models"]
    assert models["facebook/sam3.1"]["present"] is True
    assert models["facebook/sam3"]["present"] is False


def test_a_token_without_the_licence_explains_itself(installing, hub):
    ungranted = "hf_NotGrantedNotGrantedNotGranted00"
    hub.valid_tokens.add(ungranted)  # a real token, but its owner never accepted the licence
    sidecar = installing(HF_ENDPOINT=hub.url)
    with sidecar.client() as client:
        client.post("/ml/backend/install", json={"token": ungranted})
    events = read_events(sidecar)
    end = events[-1]
    assert end["state"] == "incomplete", "the environment is installed, the weights are not"
    done = [e for e in events if e.get("phase") == "done"][-1]
    assert "HTTP 403" in done["message"]
    assert "accept the licence for facebook/sam3" in done["message"].lower()
    with sidecar.client() as client:
        status = client.get("/ml/status").json()
    assert status["installed"] is True


def test_cancel_stops_the_install_and_keeps_the_environment(installing, hub):
    files = hub.repos[("model", "facebook/sam3")].files
    slow = FakeFile(os.urandom(3_000_000), lfs=True, rate_bytes_per_s=200_000)  # ~15 s
    files["model.safetensors"] = slow
    sidecar = installing(HF_ENDPOINT=hub.url)
    with sidecar.client() as client:
        client.post("/ml/backend/install", json={"token": TOKEN})
        wait_until(
            lambda: client.get("/ml/backend/install").json().get("phase") == "weights",
            timeout_s=60,
            what="the weights download to start",
        )
        cancelled = client.delete("/ml/backend/install").json()
        status = client.get("/ml/status").json()
    assert cancelled["state"] == "cancelled"
    assert status["installed"] is True, "the environment built before the cancel stays"


def test_bad_install_requests_are_422(installing):
    sidecar = installing()
    with sidecar.client() as client:
        assert client.post("/ml/backend/install", json={"bakend": "meta"}).status_code == 422
        assert client.post("/ml/backend/install", json={"token": 42}).status_code == 422
        assert client.post("/ml/backend/install", json=["meta"]).status_code == 422
        assert client.delete("/ml/backend/install").status_code == 409
        assert client.get("/ml/backend/install").json()["state"] == "none"


def test_a_damaged_offline_bundle_is_refused_through_the_app(installing, tmp_path):
    damaged = tmp_path / "geolibre-ml-bundle.tar"
    damaged.write_bytes(b"not a bundle at all")
    sidecar = installing()
    with sidecar.client() as client:
        client.post("/ml/backend/install", json={"bundle": str(damaged)}).raise_for_status()
        events = read_events(sidecar)
        status = client.get("/ml/status").json()
    end = events[-1]
    assert end["state"] == "failed"
    assert "damaged" in end["error"]["detail"] and "nothing was installed" in end["error"]["detail"]
    assert status["installed"] is False
