"""The /ml proxy against a real stand-in, through a real sidecar process
(GEOLIBRE_ML_SAMGEO_URL: proxy only). Every error has its status and sentence,
and refused input never reaches the backend."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.harness.waiting import wait_until
from tests.standin.harness import StandinProcess, make_geotiff, make_png, start_standin

PNG = make_png(64, 48)


@pytest.fixture
def standin() -> Iterator[StandinProcess]:
    with start_standin() as process:
        yield process


@pytest.fixture
def proxied(sidecar_factory, standin):
    def start(**env: str):
        return sidecar_factory(env={"GEOLIBRE_ML_SAMGEO_URL": standin.url, **env})

    return start


def text_request(client: httpx.Client, data: bytes = PNG, **fields: str) -> httpx.Response:
    fields.setdefault("prompt", "trees")
    return client.post(
        "/ml/segment/text", files={"file": ("scene.png", data, "image/png")}, data=fields
    )


def test_segmentation_passes_through_byte_for_byte(proxied, standin):
    sidecar = proxied()
    direct = httpx.post(
        f"{standin.url}/segment/text",
        files={"file": ("scene.png", PNG, "image/png")},
        data={"prompt": "trees"},
        trust_env=False,
    )
    with sidecar.client() as client:
        via = text_request(client)
    assert via.status_code == 200
    assert via.content == direct.content, "the answer must not be altered"
    body = via.json()
    assert body["type"] == "FeatureCollection" and body["features"]
    assert body["standin"]["received"]["file_sha256"] == hashlib.sha256(PNG).hexdigest()
    assert body["standin"]["received"]["fields"] == {"prompt": "trees"}
    assert "access-control-allow-origin" not in via.headers, "samgeo-api's open CORS is dropped"


def test_geotiff_in_and_out_is_byte_exact(proxied):
    tiff = make_geotiff(300, 200, epsg=32611, origin=(500000.0, 4100000.0))
    sidecar = proxied()
    with sidecar.client() as client:
        response = text_request(client, data=tiff, output_format="geotiff")
        geojson = text_request(client, data=tiff)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/tiff"
    assert response.content == tiff
    assert geojson.json()["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32611"


def test_a_large_upload_streams_through_intact(proxied):
    big = os.urandom(1024 * 1024) * 96  # 96 MiB
    sidecar = proxied()
    with sidecar.client(timeout_s=120) as client:
        response = client.post(
            "/ml/segment/automatic",
            files={"file": ("big.tif", big, "image/tiff")},
            data={"output_format": "geotiff"},
        )
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == hashlib.sha256(big).hexdigest()


def test_no_objects_found_404_passes_through_unchanged(proxied, standin):
    sidecar = proxied()
    with sidecar.client() as client:
        response = text_request(client, prompt="standin:404")
    assert response.status_code == 404
    assert response.json()["detail"].startswith("No objects found")


def test_backend_500_becomes_a_sentence_with_cause_and_hint(proxied, standin):
    raw = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    standin.set_switches(mode="500", detail_500=raw)
    sidecar = proxied()
    with sidecar.client() as client:
        response = text_request(client)
        status = client.get("/ml/status").json()
    assert response.status_code == 500
    body = response.json()
    assert body["detail"] == "samgeo-api could not segment: the GPU ran out of memory."
    assert body["cause"] == "cuda_out_of_memory"
    assert "GPU ran out of memory" in body["hint"]
    assert any("GPU ran out of memory" in hint for hint in status["hints"])
    assert raw in sidecar.stderr(), "the library's own words stay in the log"


def test_backend_400_passes_through(proxied):
    sidecar = proxied()
    with sidecar.client() as client:
        response = text_request(client, output_format="shapefile")
    assert response.status_code == 400
    assert "output_format" in response.json()["detail"]


MULTIPART = "multipart/form-data; boundary=XyZ"


@pytest.mark.parametrize(
    ("content_type", "body", "status", "phrase"),
    [
        ("application/json", b'{"prompt": "trees"}', 400, "multipart/form-data"),
        (MULTIPART, b"--XyZ\r\nbroken", 400, "ended early"),
        (MULTIPART, b'--XyZ\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nt\r\n--XyZ--',
         422, "Field 'file' is required"),
        (MULTIPART, b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
         b'\r\npng\r\n--XyZ\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nt\r\n'
         b'--XyZ\r\nContent-Disposition: form-data; name="confidence_threshold"\r\n\r\nhigh\r\n'
         b"--XyZ--", 422, "Field 'confidence_threshold' must be a number"),
        (MULTIPART, b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
         b'\r\npng\r\n--XyZ\r\nContent-Disposition: form-data; name="file"; filename="b.png"'
         b"\r\n\r\npng\r\n--XyZ--", 422, "Field 'file' was sent more than once"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_and_nothing_reaches_the_backend(
    proxied, standin, content_type, body, status, phrase
):
    sidecar = proxied()
    before = standin.stats()["segment_requests"]
    with sidecar.client() as client:
        response = client.post(
            "/ml/segment/text", content=body, headers={"content-type": content_type}
        )
        assert response.status_code == status
        assert phrase in response.json()["detail"]
        assert text_request(client).status_code == 200, "the sidecar keeps serving"
    assert standin.stats()["segment_requests"] == before + 1


def test_non_json_prompt_fields_are_refused_before_forwarding(proxied, standin):
    sidecar = proxied()
    with sidecar.client() as client:
        response = client.post(
            "/ml/segment/predict",
            files={"file": ("a.png", PNG, "image/png")},
            data={"point_coords": "[[10, 20]", "point_labels": "[1]"},
        )
    assert response.status_code == 422
    assert "point_coords" in response.json()["detail"]
    assert standin.stats()["segment_requests"] == 0


def test_oversize_upload_is_413_before_anything_is_forwarded(proxied, standin):
    sidecar = proxied(GEOLIBRE_ML_MAX_UPLOAD_MB="1")
    with sidecar.client() as client:
        response = text_request(client, data=b"\0" * (2 * 1024 * 1024))
        assert response.status_code == 413
        assert "GEOLIBRE_ML_MAX_UPLOAD_MB" in response.json()["detail"]
    assert standin.stats()["segment_requests"] == 0
    with sidecar.client() as client:
        assert text_request(client).status_code == 200


def test_wrong_token_and_wrong_host_are_refused(proxied, standin):
    sidecar = proxied()
    with sidecar.client(token="nope") as client:
        response = text_request(client)
        assert response.status_code == 401
        assert "token is wrong" in response.json()["detail"]
    response = httpx.get(
        f"{sidecar.url}/ml/status",
        headers={"X-GeoLibre-Token": sidecar.token, "Host": "attacker.example"},
        trust_env=False,
    )
    assert response.status_code == 400
    assert standin.stats()["segment_requests"] == 0


def test_bearer_token_is_accepted(proxied):
    sidecar = proxied()
    response = httpx.get(
        f"{sidecar.url}/ml/status",
        headers={"Authorization": f"Bearer {sidecar.token}"},
        trust_env=False,
    )
    assert response.status_code == 200


def test_cors_allows_the_tauri_origins_only(proxied):
    sidecar = proxied()
    preflight = {
        "Origin": "tauri://localhost",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-geolibre-token",
    }
    ok = httpx.options(f"{sidecar.url}/ml/segment/text", headers=preflight, trust_env=False)
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "tauri://localhost"
    evil = httpx.options(
        f"{sidecar.url}/ml/segment/text",
        headers={**preflight, "Origin": "https://evil.example"},
        trust_env=False,
    )
    assert "access-control-allow-origin" not in evil.headers
    # An error the front end must be able to read carries CORS headers too.
    denied = httpx.get(
        f"{sidecar.url}/ml/status", headers={"Origin": "tauri://localhost"}, trust_env=False
    )
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == "tauri://localhost"


def test_too_many_in_flight_is_429(proxied, standin):
    standin.set_switches(infer_s=3)
    sidecar = proxied(GEOLIBRE_ML_MAX_IN_FLIGHT="1")
    results: list[int] = []

    def slow() -> None:
        with sidecar.client() as client:
            results.append(text_request(client).status_code)

    worker = threading.Thread(target=slow)
    worker.start()
    with sidecar.client() as client:
        # Ask the sidecar, not the stand-in: the stand-in's loop is blocked in inference.
        wait_until(
            lambda: client.get("/ml/status").json()["backend"]["in_flight"] == 1,
            timeout_s=10,
            what="the first request to be in flight",
        )
        response = text_request(client)
    assert response.status_code == 429
    assert "limit is 1" in response.json()["detail"]
    worker.join(timeout=30)
    assert results == [200]


def test_upstream_timeout_is_504(proxied, standin):
    standin.set_switches(infer_s=3)
    sidecar = proxied(GEOLIBRE_ML_UPSTREAM_TIMEOUT_S="0.5")
    with sidecar.client() as client:
        response = text_request(client)
    assert response.status_code == 504
    assert "did not answer within 0.5 s" in response.json()["detail"]


def test_backend_dropping_the_connection_is_502(proxied, standin):
    sidecar = proxied()
    with sidecar.client() as client:
        response = text_request(client, prompt="standin:crash")
    assert response.status_code == 502
    assert "dropped the connection" in response.json()["detail"]


def test_backend_dying_mid_answer_leaves_the_answer_visibly_unfinished(proxied, standin):
    sidecar = proxied()
    with sidecar.client() as client:
        # Half a FeatureCollection must never arrive looking like a whole one.
        with pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|complete message"):
            text_request(client, prompt="standin:cut")
        assert client.get("/health").status_code == 200, "the sidecar keeps serving"
    assert "backend broke while sending its answer" in sidecar.stderr()


def test_unreachable_external_backend_is_503_saying_why(sidecar_factory):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sidecar = sidecar_factory(env={"GEOLIBRE_ML_SAMGEO_URL": f"http://user:pw@127.0.0.1:{port}"})
    with sidecar.client() as client:
        response = text_request(client)
        status = client.get("/ml/status").json()
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert f"127.0.0.1:{port}" in detail and "unset GEOLIBRE_ML_SAMGEO_URL" in detail
    assert "pw" not in detail and "user" not in detail
    assert status["available"] is False
    assert "pw" not in json.dumps(status)


def test_an_abandoned_request_keeps_its_slot_until_the_backend_finishes(proxied, standin):
    # samgeo-api cannot cancel inference: a client that leaves does not free the backend.
    standin.set_switches(infer_s=3)
    sidecar = proxied(GEOLIBRE_ML_MAX_IN_FLIGHT="1")
    body = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        + PNG
        + b'\r\n--B\r\nContent-Disposition: form-data; name="prompt"\r\n\r\ntrees\r\n--B--\r\n'
    )
    head = (
        f"POST /ml/segment/text HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GeoLibre-Token: {sidecar.token}"
        f"\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", sidecar.ready["port"]))
    sock.sendall(head + body)
    with sidecar.client() as client:
        wait_until(
            lambda: client.get("/ml/status").json()["backend"]["in_flight"] == 1,
            timeout_s=10,
            what="the request to be in flight",
        )
        sock.close()
        wait_until(
            lambda: client.get("/ml/status").json()["backend"]["abandoned"] == 1,
            timeout_s=5,
            what="the sidecar to notice the client left",
        )
        assert client.get("/ml/status").json()["backend"]["in_flight"] == 1
        refused = text_request(client)
        assert refused.status_code == 429, "the backend is still busy with the abandoned one"
        wait_until(
            lambda: client.get("/ml/status").json()["backend"]["in_flight"] == 0,
            timeout_s=15,
            what="the slot to come back once the backend has answered",
        )
        assert client.get("/ml/status").json()["backend"]["abandoned"] == 0
        assert text_request(client).status_code == 200
    assert standin.stats()["segment_requests"] == 2


def test_status_answers_while_the_backend_blocks_in_inference(proxied, standin):
    standin.set_switches(infer_s=3)
    sidecar = proxied()
    with sidecar.client() as client:
        wait_until(lambda: client.get("/ml/status").json()["available"], timeout_s=10)

    def blocked_request() -> None:
        with sidecar.client() as client:
            text_request(client)

    worker = threading.Thread(target=blocked_request)
    worker.start()
    with sidecar.client() as client:
        wait_until(
            lambda: client.get("/ml/status").json()["backend"]["in_flight"] == 1, timeout_s=10
        )
        started = time.monotonic()
        status = client.get("/ml/status").json()
        elapsed = time.monotonic() - started
    worker.join(timeout=30)
    assert elapsed < 1.0, "status must not wait for the blocked backend"
    assert status["available"] is True, "a busy backend is not an outage"
    assert status["backend"]["in_flight"] == 1
