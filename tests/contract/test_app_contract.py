"""The GeoLibre desktop app's contract (tests/reference/geolibre-desktop.md), held
against our real sidecar: the drop-in promise, tested rather than read.

- ``/ml/status`` in every state we can reach (not installed, stopped, starting,
  ready, busy, failed; external with and without a backend; our own install),
  captured from the real sidecar under uvicorn and compiled with ``tsc --strict``
  against the app's ``MlStatus`` type, which is built from the reference's own
  words; our TypeScript client's ``MlStatus`` must be assignable to it.
- The fields the app's ``mlSegment`` sends in each mode are accepted and reach
  samgeo-api (the stand-in echoes every part it received, in order).
- Every error the app can see is JSON with a ``detail`` sentence; ``/health``
  answers as the app polls it; the app's shutdown path leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import install_offline
from tests.env_manager.fake_hub import sam3_hub
from tests.harness.node import CLIENT, ensure_node_modules, node_base_env, tail
from tests.harness.processes import wait_gone, with_marker
from tests.harness.sidecar import Sidecar
from tests.harness.waiting import wait_until
from tests.reference import APP_CONTRACT
from tests.standin.harness import STANDIN_SCRIPT, make_geotiff, start_standin

REFERENCE = APP_CONTRACT.read_text(encoding="utf-8")
STANDIN_CMD = shlex.join([sys.executable, str(STANDIN_SCRIPT)])
GEOTIFF = make_geotiff(64, 48, epsg=32611, origin=(500_000.0, 3_700_000.0), pixel_size=(10, 10))
TSC_TIMEOUT_S = 120
TOKEN = "hf_ContractContractContract0123456"

# What the app's mlSegment sends after `file`, per mode (reference: "The /ml contract").
APP_FIELDS: dict[str, list[tuple[str, str]]] = {
    "text": [
        ("model_version", "sam3"),
        ("output_format", "geojson"),
        ("min_size", "0"),
        ("max_size", "1000000"),
        ("prompt", "trees"),
        ("confidence_threshold", "0.5"),
    ],
    "automatic": [("model_version", "sam3"), ("output_format", "geojson"), ("min_size", "10")],
    "predict": [
        ("model_version", "sam3"),
        ("output_format", "geojson"),
        ("point_coords", json.dumps([[-117.16, 32.71]])),
        ("point_labels", json.dumps([1])),
        ("boxes", json.dumps([[-117.2, 32.7, -117.1, 32.8]])),
        ("point_crs", "EPSG:4326"),
    ],
}


def _section(start: str, end: str) -> str:
    found = re.search(re.escape(start) + r"(.*?)" + re.escape(end), REFERENCE, re.S)
    assert found, f"the reference no longer has {start!r} ... {end!r}"
    return found.group(1)


def app_status_type() -> str:
    """The app's ``MlStatus`` as the reference writes it, as a TypeScript interface."""
    words = _section("`MlStatus`):", "GeoLibre's sidecar fills")
    required, _, optional = words.partition("and optional")
    fields = [
        *(f"  {name}: {kind};" for name, kind in re.findall(r"`(\w+): ([^`]+)`", required)),
        *(f"  {name}?: {kind};" for name, kind in re.findall(r"`(\w+): ([^`]+)`", optional)),
    ]
    assert len(fields) == 6, fields
    return "interface AppMlStatus {\n" + "\n".join(fields) + "\n}"


def test_the_requests_cover_every_field_the_reference_says_the_app_sends():
    words = _section("The app's segment call (`mlSegment`)", "Errors are read")
    named = {name for name in re.findall(r"`([a-z_]+)`", words) if name != "mlSegment"}
    sent = {"file"} | {name for fields in APP_FIELDS.values() for name, _ in fields}
    assert "It never sends `backend`" in words
    assert named - {"backend"} == sent
    assert "EPSG:4326" in words and ("point_crs", "EPSG:4326") in APP_FIELDS["predict"]


# --- running sidecars ------------------------------------------------------------


def app_request(client: httpx.Client, mode: str, fields: list[tuple[str, str]]) -> httpx.Response:
    """A segment request as the app builds it: the file first, then its text fields."""
    parts: list[tuple[str, Any]] = [("file", ("scene.tif", GEOTIFF, "image/tiff"))]
    parts += [(name, (None, value)) for name, value in fields]
    return client.post(f"/ml/segment/{mode}", files=parts)


def status_of(sidecar: Sidecar) -> dict[str, Any]:
    with sidecar.client() as client:
        response = client.get("/ml/status")
    assert response.status_code == 200
    return response.json()


def wait_state(sidecar: Sidecar, state: str, timeout_s: float = 30) -> dict[str, Any]:
    return wait_until(
        lambda: (s := status_of(sidecar))["state"] == state and s,
        timeout_s=timeout_s,
        what=f"state {state}",
    )


def in_background(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    return thread, result


def error_body(response: httpx.Response, status: int) -> dict[str, Any]:
    """The app reads errors from JSON ``detail``: every non-2xx must have one, a sentence."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("detail"), str) and len(body["detail"]) > 10, body
    return body


def echoed(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()["standin"]["received"]


@pytest.fixture(scope="module")
def contract() -> dict[str, dict[str, Any]]:
    """Answers captured by the tests below, compiled by the last one."""
    return {"status": {}, "error": {}}


@pytest.fixture(scope="module")
def installed_home(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, warm_uv_cache: Path
) -> Path:
    """Our own install (real uv, from the wheelhouse), its weights from a fake Hub."""
    home = tmp_path_factory.mktemp("contract home")
    files = {"config.json": b'{"model_type": "sam3"}\n', "model.safetensors": os.urandom(4096),
             "processor_config.json": b"{}\n", "sam3.pt": os.urandom(4096)}  # fmt: skip
    hub = sam3_hub(TOKEN, files, lfs=("sam3.pt", "model.safetensors"), vocab=os.urandom(2048))
    try:
        install_offline(home, wheelhouse, warm_uv_cache, "gltest-contract", hub=(hub.url, TOKEN))
    finally:
        hub.close()
    return home


def test_not_installed_status_and_errors(sidecar_factory, contract):
    sidecar = sidecar_factory(env={"PATH": "/usr/bin:/bin"})  # no samgeo-api to fall back on
    status = status_of(sidecar)
    assert status["available"] is False and status["installed"] is False
    assert not {"url", "version", "models"} & status.keys(), "absent, not null, as GeoLibre's"
    contract["status"]["not installed"] = status
    with sidecar.client() as client:
        unavailable = app_request(client, "text", APP_FIELDS["text"])
    contract["error"]["503"] = error_body(unavailable, 503)
    with sidecar.client(token="") as client:
        contract["error"]["401 no token"] = error_body(client.get("/ml/status"), 401)
    with sidecar.client(token="wrong") as client:
        contract["error"]["401 wrong token"] = error_body(client.get("/ml/models"), 401)


def test_managed_life_cycle_fields_and_errors(sidecar_factory, contract):
    sidecar = sidecar_factory(
        env={
            "GEOLIBRE_ML_SAMGEO_CMD": STANDIN_CMD,
            "STANDIN_START_DELAY_S": "2",
            "STANDIN_START_PROGRESS": "output",
            "GEOLIBRE_ML_MAX_IN_FLIGHT": "1",
            "GEOLIBRE_ML_MAX_UPLOAD_MB": "1",
            "GEOLIBRE_ML_UPSTREAM_TIMEOUT_S": "6",
            "GEOLIBRE_ML_RESTART_BACKOFF_S": "0.1",
        }
    )
    contract["status"]["stopped"] = status_of(sidecar)
    with sidecar.client() as client:
        assert client.post("/ml/backend/start").status_code in (200, 202)
        contract["status"]["starting"] = wait_state(sidecar, "starting")
        ready = contract["status"]["ready"] = wait_state(sidecar, "ready")
        assert ready["available"] is True
        assert ready["models"]["sam3"] == ["facebook/sam3", "facebook/sam3.1"]
        assert isinstance(ready["loaded_models"], list)

        # Not our install: every field the app sends reaches samgeo-api, and nothing else.
        for mode, fields in APP_FIELDS.items():
            for sent in (fields, [f for f in fields if f[0] not in ("min_size", "max_size")]):
                received = echoed(app_request(client, mode, sent))
                assert received["part_names"] == ["file", *(name for name, _ in sent)]
                assert received["fields"] == dict(sent)
                assert received["file_sha256"] == hashlib.sha256(GEOTIFF).hexdigest()

        # A request longer than GEOLIBRE_ML_UPSTREAM_TIMEOUT_S: busy while it runs, then 504.
        slow, result = in_background(
            lambda: app_request(client, "text", [("prompt", "standin:sleep=9")])
        )
        busy = contract["status"]["busy"] = wait_state(sidecar, "busy")
        assert busy["available"] is True
        # The app polls /health: it answers at once while samgeo-api is blocked.
        with sidecar.client(token="", timeout_s=1.0) as anonymous:
            health = anonymous.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        too_many = app_request(client, "text", APP_FIELDS["text"])
        contract["error"]["429"] = error_body(too_many, 429)
        slow.join(timeout=30)
        contract["error"]["504"] = error_body(result[0], 504)

        not_found = app_request(client, "text", [("prompt", "standin:404")])
        contract["error"]["404 pass-through"] = error_body(not_found, 404)
        assert not_found.json()["detail"].startswith("No objects found")
        big = client.post(
            "/ml/segment/text",
            files={"file": ("big.tif", b"\0" * (2 * 1024 * 1024), "image/tiff")},
            data={"prompt": "trees"},
        )
        contract["error"]["413"] = error_body(big, 413)
        bad = app_request(client, "text", [("prompt", "trees"), ("min_size", "ten")])
        contract["error"]["422"] = error_body(bad, 422)
        crashed = app_request(client, "text", [("prompt", "standin:crash")])
        contract["error"]["502"] = error_body(crashed, 502)


def test_failed_status(sidecar_factory, contract):
    sidecar = sidecar_factory(
        env={
            "GEOLIBRE_ML_SAMGEO_CMD": STANDIN_CMD,
            "STANDIN_FAIL_START": "ModuleNotFoundError: No module named 'sam3'",
        }
    )
    with sidecar.client() as client:
        error_body(app_request(client, "text", APP_FIELDS["text"]), 503)
    failed = contract["status"]["failed"] = wait_state(sidecar, "failed")
    assert failed["available"] is False and "url" not in failed


def test_external_backend_with_and_without_an_answer(sidecar_factory, contract):
    with start_standin() as standin:
        sidecar = sidecar_factory(env={"GEOLIBRE_ML_SAMGEO_URL": standin.url})
        answering = wait_until(
            lambda: (s := status_of(sidecar))["available"] and s, timeout_s=20, what="a probe"
        )
        contract["status"]["external, answering"] = answering
        assert answering["models"]["sam3"] == ["facebook/sam3", "facebook/sam3.1"]
        with sidecar.client() as client:
            received = echoed(app_request(client, "predict", APP_FIELDS["predict"]))
        assert received["fields"]["point_crs"] == "EPSG:4326"
    sidecar.close()  # one sidecar per data folder
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    silent = sidecar_factory(env={"GEOLIBRE_ML_SAMGEO_URL": f"http://127.0.0.1:{port}"})
    contract["status"]["external, silent"] = wait_until(
        lambda: (s := status_of(silent))["backend"]["health"]["last_error"] and s,
        timeout_s=20,
        what="a failed probe",
    )


def test_our_install_adds_its_implementation_and_refuses_what_cannot_run(
    sidecar_factory, installed_home, contract
):
    sidecar = sidecar_factory(home=installed_home)
    with sidecar.client() as client:
        received = echoed(app_request(client, "text", APP_FIELDS["text"]))
        refused = app_request(client, "automatic", APP_FIELDS["automatic"])
    names = [name for name, _ in APP_FIELDS["text"]]
    assert received["part_names"] == ["file", *names, "backend"]
    assert received["fields"] == {**dict(APP_FIELDS["text"]), "backend": "transformers"}
    contract["error"]["501"] = error_body(refused, 501)
    status = contract["status"]["ready, our install"] = status_of(sidecar)
    assert status["modes"]["automatic"]["works"] is False


# --- shutdown as the app does it -------------------------------------------------


def _tree(sidecar: Sidecar) -> list[int]:
    return [sidecar.pid, *sidecar.descendants()]


def _port_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_sigterm_to_the_process_group_then_post_shutdown(sidecar_factory, marker):
    sidecar = sidecar_factory(env={"GEOLIBRE_ML_SAMGEO_CMD": STANDIN_CMD})
    with sidecar.client() as client:
        assert client.post("/ml/backend/start").status_code in (200, 202)
    wait_state(sidecar, "ready")
    tree = _tree(sidecar)
    assert len(tree) >= 2, "the backend runs"
    os.killpg(os.getpgid(sidecar.pid), signal.SIGTERM)
    with sidecar.client(timeout_s=2.0) as client:
        try:  # the app sends this whatever happened; it may find nobody listening
            late = client.post("/shutdown")
            assert late.status_code == 202
        except httpx.TransportError:
            pass
    wait_gone(tree, timeout_s=20, what="the sidecar and its backend after SIGTERM")
    assert sidecar.proc.wait(timeout=5) is not None
    assert _port_closed(sidecar.ready["port"])
    wait_until(lambda: not with_marker(marker), timeout_s=10, what="no process left")


def test_post_shutdown_alone_stops_the_sidecar_and_its_backend(sidecar_factory, marker):
    sidecar = sidecar_factory(env={"GEOLIBRE_ML_SAMGEO_CMD": STANDIN_CMD})
    with sidecar.client() as client:
        assert client.post("/ml/backend/start").status_code in (200, 202)
        wait_state(sidecar, "ready")
        tree = _tree(sidecar)
        answer = client.post("/shutdown")
    assert answer.status_code == 202 and answer.json() == {"status": "shutting down"}
    wait_gone(tree, timeout_s=20, what="the sidecar and its backend after POST /shutdown")
    wait_until(lambda: not with_marker(marker), timeout_s=10, what="no process left")


def test_health_answers_as_the_app_polls_it(sidecar_factory):
    sidecar = sidecar_factory()
    for token in ("", "not-the-token", None):  # exempt from the token check
        with sidecar.client(token=token, timeout_s=1.0) as client:
            health = wait_until(lambda c=client: c.get("/health"), timeout_s=10, what="/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "version": health.json()["version"]}


# --- the types, compiled ---------------------------------------------------------


def _ident(label: str) -> str:
    return re.sub(r"\W+", "_", label).strip("_")


def contract_source(statuses: dict[str, Any], errors: dict[str, Any]) -> str:
    types = CLIENT / "src" / "types.js"
    lines = [
        f"import type {{ MlStatus }} from {json.dumps(str(types))};",
        "",
        "// The app's type, from the words of tests/reference/geolibre-desktop.md.",
        app_status_type(),
        "interface AppError { detail: string }",
        "",
        # Checks assignability (literal types kept where the target wants them)
        # without complaining about keys of our own, as the app's `as MlStatus` would not.
        "const conforms = <T,>() => <U extends T>(value: U): U => value;",
        "const appStatus = conforms<AppMlStatus>();",
        "const ourStatus = conforms<MlStatus>();",
        "const appError = conforms<AppError>();",
        "",
        "// Our client's type works wherever the app's does.",
        "declare const ours: MlStatus;",
        "export const oursWhereTheAppsGoes: AppMlStatus = ours;",
        "",
        "// The shape before issue 18 must not pass (proves the check can fail).",
        "// @ts-expect-error url is null and models is samgeo-api's whole answer",
        'appStatus({ available: false, message: "m", url: null, models: { models: { sam3: '
        '["facebook/sam3"] }, loaded: [] } });',
    ]
    for label, status in statuses.items():
        lines += [
            f"// /ml/status: {label}",
            f"export const app_{_ident(label)} = appStatus({json.dumps(status)});",
            f"export const ours_{_ident(label)} = ourStatus({json.dumps(status)});",
        ]
    for label, body in errors.items():
        name = f"error_{_ident(label)}"
        lines += [f"// error {label}", f"export const {name} = appError({json.dumps(body)});"]
    return "\n".join(lines) + "\n"


def test_every_captured_answer_compiles_against_the_apps_types(contract, tmp_path):
    statuses, errors = contract["status"], contract["error"]
    expected_states = {"not installed", "stopped", "starting", "ready", "busy", "failed",
                       "external, answering", "external, silent", "ready, our install"}  # fmt: skip
    assert statuses.keys() == expected_states, "run the whole module: earlier tests capture"
    assert {label.split()[0] for label in errors} == {
        "401", "404", "413", "422", "429", "501", "502", "503", "504"
    }  # fmt: skip
    env = node_base_env()
    ensure_node_modules(env)
    source = tmp_path / "contract.ts"
    source.write_text(contract_source(statuses, errors), encoding="utf-8")
    config = {
        "compilerOptions": {
            "strict": True, "noEmit": True, "target": "ES2022", "lib": ["ES2022"],
            "module": "ESNext", "moduleResolution": "Bundler", "types": [],
            "skipLibCheck": True,
        },
        "files": [source.name],
    }  # fmt: skip
    (tmp_path / "tsconfig.json").write_text(json.dumps(config), encoding="utf-8")
    tsc = CLIENT / "node_modules" / "typescript" / "bin" / "tsc"
    command = ["node", str(tsc), "--strict", "-p", str(tmp_path / "tsconfig.json")]
    proc = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=TSC_TIMEOUT_S, cwd=tmp_path
    )
    if proc.returncode != 0:
        lines = source.read_text().splitlines()
        cited = sorted(
            {
                (int(n), int(c))
                for n, c in re.findall(rf"{re.escape(source.name)}\((\d+),(\d+)\)", proc.stdout)
            }
        )  # tsc may also cite the client's own files: their lines are in its output
        context = "\n".join(
            f"{lines[n - 2]}\n  line {n}: ...{lines[n - 1][max(0, c - 200) : c + 60]}..."
            for n, c in cited
        )
        pytest.fail(f"tsc --strict refused:\n{tail(proc.stdout)}\n{context}", pytrace=False)


@pytest.fixture(autouse=True, scope="module")
def _no_leftovers() -> Iterator[None]:
    yield
    assert not with_marker("gltest-contract"), "the install left processes behind"
