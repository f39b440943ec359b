"""`available` tells the truth, through the real sidecar: with the model environment
installed for real (uv, offline, the stand-in samgeo-api) it is true only once the
weights of the plan's SAM 3 implementation are on disk (fetched for real from a fake
Hub); without them a segment request is refused at once with the same sentence.
samgeo-api's raw failures reach the client as sentences; the doctor agrees with
status and does not take our own sidecar for a stranger."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import httpx
import pytest
from geolibre_env.model_env import active_environment
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import load_spec
from geolibre_env.weights.sam3 import fetch_weights, store_token

from tests.conftest import offline_install_env
from tests.env_manager.conftest import Installer
from tests.env_manager.fake_hub import sam3_hub
from tests.harness.sidecar import base_env
from tests.harness.waiting import wait_until
from tests.sidecar.supervision import FAST
from tests.standin.harness import make_png, start_standin

pytestmark = pytest.mark.slow

TOKEN = "hf_StatusTruthToken0123456789abcdefXYZ"
PNG = make_png(16, 16)
RECORDED = json.loads(
    (
        Path(__file__).parents[1] / "env_manager/fixtures/backend_errors"
        / "samgeo-api-1.4.2-no-weights.json"
    ).read_text()
)  # fmt: skip


@pytest.fixture
def cli(ml_home, wheelhouse, warm_uv_cache, marker) -> Installer:
    """`geolibre-ml` on the sidecar's home, installing offline from the stand-in wheels."""
    return Installer(
        ml_home, base_env(ml_home, marker, offline_install_env(wheelhouse, warm_uv_cache))
    )


def segment(client: httpx.Client, **fields: str) -> httpx.Response:
    return client.post(
        "/ml/segment/text",
        files={"file": ("a.png", PNG, "image/png")},
        data={"prompt": "roofs", **fields},
    )


def test_available_only_with_the_weights_of_the_planned_implementation(
    cli, sidecar_factory, ml_home
):
    cli.install_json("--no-weights")
    settings = EnvSettings.from_environ({"GEOLIBRE_ML_HOME": str(ml_home)})
    active = active_environment(settings.paths)
    assert active is not None and active.record["sam3_backend"] == "transformers"
    sidecar = sidecar_factory(env={"STANDIN_REQUIRE_WEIGHTS": "1"})
    with sidecar.client() as client:
        status = client.get("/ml/status").json()
        assert status["available"] is False and status["installed"] is True
        assert "weights for the transformers implementation are missing" in status["message"]
        assert "`geolibre-ml install --ask-token`" in status["hints"][0]
        assert status["weights"]["checked"] is True
        assert status["weights"]["token_configured"] is False

        # No backend field (as GeoLibre sends it): refused before anything starts.
        started = time.monotonic()
        refused = segment(client)
        elapsed = time.monotonic() - started
        assert refused.status_code == 503 and elapsed < 2.0, (refused.text, elapsed)
        body = refused.json()
        assert body["cause"] == "weights_missing" and body["detail"] == status["message"]
        assert "--ask-token" in body["hint"]
        assert client.get("/ml/status").json()["backend"]["state"] == "stopped"

        # A running backend does not make it available either, nor gets the request.
        client.post("/ml/backend/start")
        wait_until(
            lambda: client.get("/ml/status").json()["backend"]["state"] == "ready",
            timeout_s=60,
            what="the backend to be ready",
        )
        status = client.get("/ml/status").json()
        assert status["available"] is False, "answering is not enough without the weights"
        assert segment(client, backend="transformers").status_code == 503
        backend_url = f"http://127.0.0.1:{status['backend']['port']}"
        stats = httpx.get(f"{backend_url}/__standin__/stats", trust_env=False).json()
        assert stats["segment_requests"] == 0, "a request that can only fail is not forwarded"

        # The token is looked at again each time, not remembered from start-up.
        store_token(settings.paths, TOKEN)
        wait_until(
            lambda: client.get("/ml/status").json()["weights"]["token_configured"],
            timeout_s=5,
            what="status to see the stored token",
        )
        assert "already configured" in client.get("/ml/status").json()["hints"][0]

        hub = sam3_hub(
            TOKEN,
            {"config.json": b'{"model_type": "sam3"}\n', "model.safetensors": b"w" * 50_000,
             "processor_config.json": b"{}\n"},
            lfs=("model.safetensors",),
            vocab=b"vocab" * 100,
        )  # fmt: skip
        try:
            fetch_weights(
                EnvSettings.from_environ(
                    {"GEOLIBRE_ML_HOME": str(ml_home), "HF_ENDPOINT": hub.url}
                ),
                load_spec(),
                backend="transformers",
                token=TOKEN,
                site_packages=active.site_packages,
            )
        finally:
            hub.close()
        status = wait_until(
            lambda: (s := client.get("/ml/status").json())["available"] and s,
            timeout_s=5,
            what="status to see the weights",
        )
        assert status["weights"]["present"] is True and status["message"].startswith("samgeo-api")
        done = segment(client)
        assert done.status_code == 200, done.text
        assert done.json()["standin"]["received"]["fields"]["backend"] == "transformers"

        settings.paths.hf_home.joinpath("token").unlink()
        shutil.rmtree(settings.paths.hf_home / "hub")
        status = wait_until(
            lambda: (s := client.get("/ml/status").json())["available"] is False and s,
            timeout_s=5,
            what="status to see the weights gone",
        )
        assert "the facebook/sam3 files" in status["message"]
        assert status["weights"]["token_configured"] is False


def test_a_server_given_by_url_is_available_when_it_answers_and_says_what_is_unchecked(
    sidecar_factory,
):
    with start_standin() as standin:
        sidecar = sidecar_factory(env={"GEOLIBRE_ML_SAMGEO_URL": standin.url})
        with sidecar.client() as client:
            status = wait_until(
                lambda: (s := client.get("/ml/status").json())["available"] and s,
                timeout_s=10,
                what="the external backend to answer",
            )
    assert "cannot see that server's disk" in status["message"]
    assert status["weights"] == {
        "present": None,
        "checked": False,
        "reason": status["weights"]["reason"],
        "hint": None,
    }


@pytest.mark.parametrize(
    ("raw", "detail", "cause"),
    [
        (RECORDED["text backend=transformers, HF_HUB_OFFLINE=unset"]["body"]["detail"],
         "samgeo-api could not segment: the SAM 3 weights are missing.", "weights_missing"),
        (RECORDED["text backend=meta, HF_HUB_OFFLINE=1"]["body"]["detail"],
         "samgeo-api could not segment: it needed the network (huggingface.co) to download "
         "SAM 3's tokenizer vocabulary and could not reach it.", "network_offline"),
        ("KeyError: 'pred_masks'\nTraceback (most recent call last):\n  File \"api.py\"",
         "samgeo-api failed on this request (HTTP 500): KeyError: 'pred_masks'.",
         "request_failed"),
    ],
)  # fmt: skip
def test_raw_backend_failures_reach_the_client_as_sentences(sidecar_factory, raw, detail, cause):
    with start_standin() as standin:
        standin.set_switches(mode="500", detail_500=raw)
        sidecar = sidecar_factory(env={"GEOLIBRE_ML_SAMGEO_URL": standin.url})
        with sidecar.client() as client:
            response = segment(client)
    assert response.status_code == 500
    body = response.json()
    assert body == {"detail": detail, "cause": cause, "hint": body["hint"]} and body["hint"]
    assert raw.splitlines()[0] in sidecar.stderr(), "the raw text stays in the log"


def test_doctor_and_status_agree_on_the_backends_uptime(cli, sidecar_factory):
    sidecar = sidecar_factory(env=FAST)
    with sidecar.client() as client:
        client.post("/ml/backend/start")
        wait_until(
            lambda: (client.get("/ml/status").json()["backend"]["uptime_s"] or 0) >= 3,
            timeout_s=60,
            what="the backend to be up for 3 s",
        )
        proc = cli.run("doctor", "--json")
        status = client.get("/ml/status").json()
    report = json.loads(proc.stdout)
    backend = next(c for c in report["checks"] if c["id"] == "backend")
    assert backend["data"]["uptime_s"] >= 3, backend
    assert abs(backend["data"]["uptime_s"] - status["backend"]["uptime_s"]) < 5
    assert "up s" not in backend["detail"]


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_doctor_knows_our_own_sidecar_on_the_old_port(cli, sidecar_factory):
    wait_until(lambda: _port_free(8765), timeout_s=30, what="port 8765 to be free")
    sidecar = sidecar_factory(args=("--port", "8765"))
    assert sidecar.url.endswith(":8765")
    proc = cli.run("doctor", "--json")
    with sidecar.client(timeout_s=60) as client:
        served = client.get("/ml/diagnostics").json()
    for report in (json.loads(proc.stdout), served):
        ports = next(c for c in report["checks"] if c["id"] == "ports")
        assert ports["status"] == "ok", ports
        assert f"geolibre-sidecar (pid {sidecar.pid})" in ports["detail"]
        assert "geolibre-sideca " not in json.dumps(ports)
    assert (
        "this GeoLibre ML sidecar"
        in next(c for c in served["checks"] if c["id"] == "ports")["detail"]
    )
