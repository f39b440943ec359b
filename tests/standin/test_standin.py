"""The samgeo-api stand-in, tested as what it is: a real server process on loopback."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.harness.processes import wait_gone

from . import samgeo_standin as server_module
from .harness import (
    StandinError,
    StandinProcess,
    free_port,
    make_geotiff,
    make_jpeg_header,
    make_png,
    spawn_standin,
    start_standin,
)
from .wheelhouse import build_wheelhouse

REFERENCE_NAME = "samgeo-api-1.4.2.openapi.json"
REFERENCE_CANDIDATES = (Path(__file__).parents[1] / "reference" / REFERENCE_NAME,)
PNG = make_png(64, 48)
NO_GPU = "Found no NVIDIA driver on your system"
UV = Path(sys.executable).with_name("uv")  # the uv of the environment running the tests


def segment(
    client: httpx.Client,
    standin: StandinProcess,
    endpoint: str,
    image: bytes = PNG,
    filename: str = "scene.png",
    **fields: str,
) -> httpx.Response:
    files = {"file": (filename, image, "application/octet-stream")}
    return client.post(f"{standin.url}/segment/{endpoint}", data=fields, files=files)


# --- the OpenAPI contract -----------------------------------------------------------

MISSING = "<no default>"


def describe_operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, tuple]]:
    """(path, method) -> {field: (type, nullable, default, required)} for form bodies."""
    result = {}
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            fields: dict[str, tuple] = {}
            if "requestBody" in operation:
                content = operation["requestBody"]["content"]
                schema = _deref(doc, content["multipart/form-data"]["schema"])
                required = set(schema.get("required", []))
                for name, prop in schema["properties"].items():
                    prop = _deref(doc, prop)
                    types = [t["type"] for t in prop.get("anyOf", [prop])]
                    (kind,) = [t for t in types if t != "null"]
                    if "contentMediaType" in prop:
                        kind = "file"
                    default = prop.get("default", MISSING)
                    fields[name] = (kind, "null" in types, default, name in required)
            result[(path, method)] = fields
    return result


def _deref(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def reference_document() -> dict[str, Any]:
    for candidate in REFERENCE_CANDIDATES:
        if candidate.is_file():
            return json.loads(candidate.read_text())
    pytest.fail(f"reference schema not found; looked at {[str(c) for c in REFERENCE_CANDIDATES]}")


def test_openapi_matches_samgeo_api_reference(standin: StandinProcess) -> None:
    served = describe_operations(standin.get_json("/openapi.json"))
    reference = describe_operations(reference_document())
    assert sorted(served) == sorted(reference)
    for operation, fields in reference.items():
        assert served[operation] == fields, operation


def test_openapi_comparison_notices_a_renamed_field_or_changed_default(
    standin: StandinProcess,
) -> None:
    served = standin.get_json("/openapi.json")
    renamed, changed = copy.deepcopy(served), copy.deepcopy(served)
    text_body = "Body_segment_text_segment_text_post"
    props = renamed["components"]["schemas"][text_body]["properties"]
    props["text_prompt"] = props.pop("prompt")
    changed["components"]["schemas"][text_body]["properties"]["confidence_threshold"]["default"] = (
        0.4
    )
    assert describe_operations(renamed) != describe_operations(served)
    assert describe_operations(changed) != describe_operations(served)


def test_defaults_applied_are_the_reference_defaults(
    standin: StandinProcess, client: httpx.Client
) -> None:
    reference = describe_operations(reference_document())
    sent = {"text": {"prompt": "tree"}, "automatic": {}, "predict": {"boxes": "[[1, 2, 3, 4]]"}}
    for endpoint, fields in sent.items():
        answer = segment(client, standin, endpoint, **fields)
        assert answer.status_code == 200, answer.text
        values = answer.json()["standin"]["values"]
        expected = reference[(f"/segment/{endpoint}", "post")]
        for name, (_, _, default, _) in expected.items():
            if name != "file" and name not in fields:
                assert values[name] == (None if default == MISSING else default), name


# --- answers --------------------------------------------------------------------------


def test_health_models_and_model_cache(standin: StandinProcess, client: httpx.Client) -> None:
    assert client.get(f"{standin.url}/health").json() == {"status": "ok", "version": "1.4.2"}
    models = client.get(f"{standin.url}/models").json()
    assert models["models"]["sam3"] == ["facebook/sam3", "facebook/sam3.1"]
    assert models["loaded"] == []
    for threshold in ("0.5", "0.7", "0.7"):
        assert segment(client, standin, "text", prompt="a", confidence_threshold=threshold)
    loaded = client.get(f"{standin.url}/models").json()["loaded"]
    assert loaded == [
        ["sam3", "facebook/sam3", [["backend", "meta"], ["confidence_threshold", t]]]
        for t in (0.5, 0.7)
    ]
    assert client.delete(f"{standin.url}/models").json() == {"status": "cleared"}
    assert client.get(f"{standin.url}/models").json()["loaded"] == []


@pytest.mark.parametrize("endpoint", ["text", "automatic", "predict"])
def test_segment_answers_carry_the_exact_upload(
    standin: StandinProcess, client: httpx.Client, endpoint: str
) -> None:
    image = make_png(120, 90)
    fields = {"text": {"prompt": "building"}, "predict": {"point_coords": "[[5, 6]]"}}
    fields_sent = {**fields.get(endpoint, {}), "not_a_samgeo_field": "kept"}
    answer = segment(client, standin, endpoint, image, filename="roof.png", **fields_sent)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    received = body["standin"]["received"]
    assert received["file_sha256"] == hashlib.sha256(image).hexdigest()
    assert received["file_bytes"] == len(image)
    assert received["filename"] == "roof.png"
    assert received["fields"] == fields_sent
    assert body["type"] == "FeatureCollection" and "crs" not in body
    for feature in body["features"]:
        assert feature["geometry"]["type"] == "Polygon"
        assert set(feature["properties"]) == {"value", "score"}
        for x, y in feature["geometry"]["coordinates"][0]:
            assert 0 <= x <= 120 and 0 <= y <= 90
    again = segment(client, standin, endpoint, image, **fields_sent).json()
    assert again["features"] == body["features"]  # a deterministic function of the bytes


def test_geotiff_input_gives_features_in_its_crs(
    standin: StandinProcess, client: httpx.Client
) -> None:
    tiff = make_geotiff(50, 40, epsg=32611, origin=(500000.0, 4100000.0), pixel_size=(0.5, 0.5))
    body = segment(client, standin, "text", tiff, "scene.tif", prompt="car").json()
    assert body["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32611"
    for feature in body["features"]:
        for x, y in feature["geometry"]["coordinates"][0]:
            assert 500000 <= x <= 500025 and 4099980 <= y <= 4100000
    geographic = make_geotiff(8, 8, epsg=4269, origin=(-120.0, 38.0), geographic=True)
    body = segment(client, standin, "automatic", geographic, "g.tif").json()
    assert body["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::4269"
    plain = segment(client, standin, "automatic", make_geotiff(8, 8), "plain.tif").json()
    assert plain["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::4326"
    jpeg = segment(client, standin, "automatic", make_jpeg_header(300, 200), "a.jpg").json()
    assert "crs" not in jpeg and jpeg["standin"]["image"]["width"] == 300


def test_output_formats(standin: StandinProcess, client: httpx.Client) -> None:
    tiff = make_geotiff(30, 20, epsg=32611, origin=(1000.0, 2000.0))
    echoed = segment(client, standin, "automatic", tiff, "in.tif", output_format="geotiff")
    assert echoed.headers["content-type"] == "image/tiff"
    assert echoed.content == tiff
    png = segment(client, standin, "text", tiff, prompt="x", output_format="png")
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert int.from_bytes(png.content[16:20], "big") == 30
    plain = segment(client, standin, "text", PNG, prompt="x", output_format="json").json()
    assert (plain["image_width"], plain["image_height"]) == (64, 48)
    assert plain["num_detections"] == len(plain["detections"]) >= 1
    assert {"id", "bbox", "width", "height", "score"} <= set(plain["detections"][0])
    detections = segment(client, standin, "text", tiff, prompt="x", output_format="detections")
    assert detections.json()["crs"] == "EPSG:32611"
    assert "bbox_pixel" in detections.json()["features"][0]["properties"]


# --- errors, as samgeo-api words them --------------------------------------------------


def test_validation_errors_are_fastapi_422(standin: StandinProcess, client: httpx.Client) -> None:
    answer = client.post(f"{standin.url}/segment/text", data={"min_size": "big"})
    assert answer.status_code == 422
    assert answer.json()["detail"] == [
        {"type": "missing", "loc": ["body", "file"], "msg": "Field required", "input": None},
        {"type": "missing", "loc": ["body", "prompt"], "msg": "Field required", "input": None},
        {
            "type": "int_parsing",
            "loc": ["body", "min_size"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "input": "big",
        },
    ]
    bad = {"confidence_threshold": "high", "prompt": "x"}
    errors = segment(client, standin, "text", **bad).json()["detail"]
    assert [(e["type"], e["loc"][1]) for e in errors] == [("float_parsing", "confidence_threshold")]
    errors = segment(client, standin, "predict", boxes="[]", multimask_output="maybe").json()
    assert errors["detail"][0]["type"] == "bool_parsing"
    as_text = client.post(f"{standin.url}/segment/automatic", data={"file": "not a file"})
    assert as_text.json()["detail"][0]["type"] == "value_error"
    empty = segment(client, standin, "automatic", min_size="", foreground="false")
    assert empty.json()["standin"]["values"]["min_size"] == 0
    assert empty.json()["standin"]["values"]["foreground"] is False


@pytest.mark.parametrize(
    ("endpoint", "fields", "detail"),
    [
        (
            "text",
            {"prompt": "x", "output_format": "svg"},
            "Invalid output_format 'svg'. Must be one of: detections, geojson, geotiff, json, png",
        ),
        ("text", {"prompt": "x", "backend": "cpu"}, "Invalid backend 'cpu'. Choose 'meta' or "),
        (
            "automatic",
            {"model_version": "sam4"},
            "Invalid model_version 'sam4'. Must be one of: ['sam', 'sam2', 'sam3']",
        ),
        (
            "text",
            {"prompt": "x", "model_id": "facebook/sam9"},
            "Invalid model_id 'facebook/sam9' for sam3. Must be one of: ['facebook/sam3', ",
        ),
        (
            "text",
            {"prompt": "x", "model_id": "facebook/sam3.1", "backend": "transformers"},
            "facebook/sam3.1 is a checkpoint repository and is only supported with backend='meta'",
        ),
        ("predict", {}, "At least one of point_coords or boxes must be provided."),
        (
            "predict",
            {"point_coords": "[[1, 2]", "point_labels": "[1]"},
            "Invalid JSON in prompt fields: Expecting ',' delimiter: line 1 column 8 (char 7)",
        ),
    ],
)
def test_bad_requests_are_400_with_samgeo_texts(
    standin: StandinProcess,
    client: httpx.Client,
    endpoint: str,
    fields: dict[str, str],
    detail: str,
) -> None:
    answer = segment(client, standin, endpoint, **fields)
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith(detail)


def test_no_objects_is_404_and_failures_are_500(
    standin: StandinProcess, client: httpx.Client
) -> None:
    answer = segment(client, standin, "text", prompt="standin:404")
    assert answer.status_code == 404
    assert answer.json()["detail"] == (
        "No objects found for the given prompt. Please try a different prompt or adjust parameters."
    )
    standin.set_switches(mode="404")
    assert segment(client, standin, "automatic").json()["detail"] == (
        "No objects found for automatic segmentation."
    )
    standin.set_switches(mode="500", detail_500="CUDA out of memory. Tried to allocate 9 GiB")
    failed = segment(client, standin, "predict", boxes="[[0, 0, 4, 4]]")
    assert (failed.status_code, failed.json()) == (
        500,
        {"detail": "CUDA out of memory. Tried to allocate 9 GiB"},
    )


def test_without_gpu_only_the_transformers_backend_loads(
    standin: StandinProcess, client: httpx.Client
) -> None:
    standin.set_switches(gpu=False)
    meta = segment(client, standin, "text", prompt="tree")
    assert meta.status_code == 500 and meta.json()["detail"].startswith(NO_GPU)
    assert segment(client, standin, "automatic").status_code == 500
    assert client.get(f"{standin.url}/models").json()["loaded"] == []  # failures not cached
    on_cpu = segment(client, standin, "text", prompt="tree", backend="transformers")
    assert on_cpu.status_code == 200


def test_required_weights_come_from_the_hub_cache_or_a_checkpoint(
    client: httpx.Client, tmp_path: Path
) -> None:
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "STANDIN_REQUIRE_WEIGHTS": "1"}
    with start_standin(env=env) as standin:
        offline = segment(client, standin, "text", prompt="tree")
        assert offline.status_code == 500
        assert "outgoing traffic has been disabled" in offline.json()["detail"]
        snapshot = tmp_path / "hf" / "hub" / "models--facebook--sam3" / "snapshots" / "abc123"
        snapshot.mkdir(parents=True)
        (snapshot / "sam3.pt").write_bytes(b"weights")
        assert segment(client, standin, "text", prompt="tree").status_code == 200
    checkpoint = tmp_path / "sam3.pt"
    checkpoint.write_bytes(b"weights")
    env = {"SAM3_CHECKPOINT_PATH": str(checkpoint), "STANDIN_REQUIRE_WEIGHTS": "1"}
    with start_standin(env={**env, "HF_HOME": str(tmp_path / "empty")}) as standin:
        assert segment(client, standin, "automatic").status_code == 200


def test_unknown_routes_and_methods(standin: StandinProcess, client: httpx.Client) -> None:
    assert client.get(f"{standin.url}/nope").json() == {"detail": "Not Found"}
    wrong = client.get(f"{standin.url}/segment/text")
    assert (wrong.status_code, wrong.json()) == (405, {"detail": "Method Not Allowed"})


# --- the event loop, HTTP details and switches ---------------------------------------------


def test_health_waits_for_a_running_inference(
    standin: StandinProcess, client: httpx.Client
) -> None:
    standin.set_switches(infer_s=1.5)
    mark = standin.mark()
    done: dict[str, Any] = {}

    def run() -> None:
        done["status"] = segment(client, standin, "text", prompt="tree").status_code
        done["at"] = time.monotonic()

    started = time.monotonic()
    worker = threading.Thread(target=run)
    worker.start()
    standin.wait_for_output("standin: inference on /segment/text for 1.50 s", since=mark)
    probe_sent = time.monotonic()
    status, _ = standin.request("GET", "/health")
    probe_answered = time.monotonic()
    worker.join(10)
    assert probe_sent - started < 1.0, "the probe must be sent while the inference runs"
    assert status == 200 and done["status"] == 200
    assert probe_answered - started >= 1.5  # it waited for the inference to end
    assert probe_answered >= done["at"] - 0.05


def test_health_answers_while_an_upload_is_still_arriving(standin: StandinProcess) -> None:
    boundary = "b0undary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    tail = f"\r\n--{boundary}--\r\n".encode()
    body = head.encode() + PNG + tail
    with socket.create_connection((standin.host, standin.port), timeout=10) as sock:
        sock.sendall(
            b"POST /segment/automatic HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            + f"boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:40]
        )
        started = time.monotonic()
        assert standin.request("GET", "/health", timeout_s=2)[0] == 200
        assert time.monotonic() - started < 1.0
        sock.sendall(body[40:])
        assert sock.recv(64).startswith(b"HTTP/1.1 200 OK")


def _read_response(reader: Any) -> tuple[bytes, dict[str, str], bytes]:
    status = reader.readline()
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.lower()] = value.strip()
    return status, headers, reader.read(int(headers["content-length"]))


def test_keep_alive_chunked_bodies_and_connection_close(standin: StandinProcess) -> None:
    boundary = "zz"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="c.png"\r\n\r\n'
    body = part.encode() + PNG + f"\r\n--{boundary}--\r\n".encode()
    pieces = [body[i : i + 50] for i in range(0, len(body), 50)]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    with socket.create_connection((standin.host, standin.port), timeout=10) as sock:
        reader = sock.makefile("rb")
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(reader)[0].startswith(b"HTTP/1.1 200")
        sock.sendall(
            b"POST /segment/automatic HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            + f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
            + chunked
        )
        status, _, answer = _read_response(reader)
        assert status.startswith(b"HTTP/1.1 200")
        digest = json.loads(answer)["standin"]["received"]["file_sha256"]
        assert digest == hashlib.sha256(PNG).hexdigest()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, _ = _read_response(reader)
        assert status.startswith(b"HTTP/1.1 200") and headers["connection"] == "close"
        assert reader.read() == b""  # the server closed the connection
        reader.close()


def test_large_streamed_upload_is_hashed_exactly(
    standin: StandinProcess, client: httpx.Client
) -> None:
    block = os.urandom(1 << 20)
    blocks = 32
    boundary = "large-upload"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.tif"\r\n\r\n'
    )

    def body() -> Any:
        yield head.encode()
        for _ in range(blocks):
            yield block
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    answer = client.post(f"{standin.url}/segment/automatic", content=body(), headers=headers)
    received = answer.json()["standin"]["received"]
    expected = hashlib.sha256(block * blocks).hexdigest()
    assert (received["file_bytes"], received["file_sha256"]) == (blocks << 20, expected)


def test_answers_stream_in_paced_parts(standin: StandinProcess, client: httpx.Client) -> None:
    standin.set_switches(response_chunks=3, response_delay_s=0.4)
    tiff = make_geotiff(300, 300)
    files = {"file": ("s.tif", tiff, "image/tiff")}
    url = f"{standin.url}/segment/automatic"
    with client.stream("POST", url, data={"output_format": "geotiff"}, files=files) as answer:
        arrivals = [(time.monotonic(), len(chunk)) for chunk in answer.iter_raw()]
    assert sum(size for _, size in arrivals) == len(tiff)
    assert arrivals[-1][0] - arrivals[0][0] >= 0.7  # two pauses between three parts


def test_switches_endpoint(standin: StandinProcess) -> None:
    current = standin.switches()
    assert current["infer_s"] == 0.0 and current["mode"] == "ok" and current["gpu"] is True
    assert standin.set_switches(infer_s=0.25, gpu=False)["infer_s"] == 0.25
    assert standin.switches()["gpu"] is False
    for bad in ({"bogus": 1}, {"mode": "explode"}, {"infer_s": "soon"}, {"response_chunks": 0}):
        status, body = standin.request("POST", "/__standin__/switches", json.dumps(bad).encode())
        assert status == 400, bad
        assert json.loads(body)["detail"]
    before = standin.stats()["segment_requests"]
    standin.set_switches(infer_s=0)
    standin.request("DELETE", "/models")
    assert standin.stats()["segment_requests"] == before


def test_prompt_sleep_directive_delays_one_request(
    standin: StandinProcess, client: httpx.Client
) -> None:
    started = time.monotonic()
    assert segment(client, standin, "text", prompt="standin:sleep=0.3").status_code == 200
    assert time.monotonic() - started >= 0.3


# --- process behaviour: start, crash, signals ---------------------------------------------


@pytest.mark.parametrize("how", ["switch", "prompt"])
def test_crash_kills_the_process_mid_request(client: httpx.Client, how: str) -> None:
    env = {"STANDIN_CRASH_MESSAGE": "RuntimeError: CUDA error: an illegal memory access"}
    with start_standin(env=env) as standin:
        if how == "switch":
            standin.set_switches(mode="crash")
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            segment(client, standin, "text", prompt="standin:crash" if how == "prompt" else "x")
        assert standin.wait(5) == 1
        assert "CUDA error: an illegal memory access" in standin.stderr_text()


def test_failing_start_exits_1_with_its_text() -> None:
    message = "ImportError: libcudart.so.13: cannot open shared object file"
    with spawn_standin(env={"STANDIN_FAIL_START": message}) as standin:
        assert standin.wait(10) == 1
        assert message in standin.stderr_text()
        assert "Started server process" not in standin.stderr_text()


def test_port_in_use_is_uvicorns_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with spawn_standin(port=port) as standin:
            assert standin.wait(10) == 1
            assert (
                f"ERROR:    [Errno 98] error while attempting to bind on address "
                f"('127.0.0.1', {port}): address already in use"
            ) in standin.stderr_text()


def test_uvicorn_log_lines_and_sigterm_during_inference(client: httpx.Client) -> None:
    with start_standin(env={"STANDIN_INFER_S": "1.0"}) as standin:
        assert re.search(
            r"INFO:     Uvicorn running on http://127\.0\.0\.1:\d+ \(Press CTRL\+C to quit\)",
            standin.stderr_text(),
        )
        mark = standin.mark()
        result: dict[str, int] = {}
        worker = threading.Thread(
            target=lambda: result.update(status=segment(client, standin, "automatic").status_code)
        )
        worker.start()
        standin.wait_for_output("standin: inference on", since=mark)
        standin.send_signal(signal.SIGTERM)
        assert standin.wait(10) == -signal.SIGTERM  # re-raised after a graceful stop
        worker.join(10)
        assert result["status"] == 200  # the inference under way was not lost
        log = standin.stderr_text()
        assert "INFO:     Shutting down" in log and "Finished server process" in log
        assert '"POST /segment/automatic HTTP/1.1" 200 OK' in standin.stdout_text()


def test_sigint_exits_0_and_ignored_sigterm_needs_sigkill() -> None:
    with start_standin() as standin:
        standin.send_signal(signal.SIGINT)
        assert standin.wait(10) == 0
    with start_standin(env={"STANDIN_IGNORE_SIGTERM": "1"}) as standin:
        standin.send_signal(signal.SIGTERM)
        assert standin.request("GET", "/health")[0] == 200
        assert standin.proc.poll() is None
        assert standin.stop(timeout_s=0.5) == -signal.SIGKILL


def test_slow_start_reports_progress_then_serves() -> None:
    started = time.monotonic()
    env = {"STANDIN_START_DELAY_S": "0.6", "STANDIN_START_PROGRESS": "output"}
    with start_standin(env=env) as standin:
        assert time.monotonic() - started >= 0.6
        before_ready = standin.stderr_text().split("Started server process")[0]
        assert before_ready.count("standin: importing modules") >= 2


def test_busy_start_burns_cpu_and_hung_start_is_silent_and_idle() -> None:
    env = {"STANDIN_START_DELAY_S": "0.6", "STANDIN_START_PROGRESS": "cpu"}
    with start_standin(env=env) as standin:
        assert psutil.Process(standin.pid).cpu_times().user >= 0.3
    with spawn_standin(env={"STANDIN_HANG_START": "1"}) as standin:
        with pytest.raises(StandinError):
            standin.wait_ready(timeout_s=1.0)
        times = psutil.Process(standin.pid).cpu_times()
        assert times.user + times.system < 0.5
        assert standin.stderr_text() == "" and standin.stdout_text() == ""


def test_exit_after_ready_and_lingering_child() -> None:
    env = {"STANDIN_EXIT_AFTER_S": "0.3", "STANDIN_CRASH_MESSAGE": "Segmentation fault"}
    with start_standin(env=env) as standin:
        assert standin.wait(10) == 1
        assert "Segmentation fault" in standin.stderr_text()
    with start_standin(env={"STANDIN_SPAWN_CHILD": "1"}) as standin:
        found = re.search(r"standin child pid (\d+)", standin.stderr_text())
        assert found
        child = psutil.Process(int(found.group(1)))
        assert child.ppid() == standin.pid
        standin.stop()
        wait_gone([child.pid], timeout_s=5, what="the stand-in's child after its stop")


def test_preload_loads_at_start_and_a_failed_preload_kills_the_start() -> None:
    with start_standin(args=["--preload", "sam3:facebook/sam3"]) as standin:
        assert standin.get_json("/models")["loaded"] == [["sam3", "facebook/sam3", []]]
    failing = spawn_standin(env={"STANDIN_GPU": "0"}, args=["--preload", "sam3:facebook/sam3"])
    with failing:
        assert failing.wait(10) == 1
        assert NO_GPU in failing.stderr_text()


# --- the wheelhouse, installed by real uv ------------------------------------------------


def _uv(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_OFFLINE": "1",
        "UV_CACHE_DIR": str(cwd / "uv-cache"),  # wheels of one name differ between tests
    }
    return subprocess.run(
        [str(UV), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


REQUIREMENTS = ("segment-geospatial[api,samgeo3]==1.4.2", "torch==2.14.1", "torchvision==0.29.1")


@pytest.mark.slow
def test_uv_installs_the_wheelhouse_and_samgeo_api_serves(tmp_path: Path) -> None:
    wheels = build_wheelhouse(tmp_path / "wheels")
    assert sorted(w.name for w in wheels) == [
        "segment_geospatial-1.4.2+standin-py3-none-any.whl",
        "torch-2.14.1+standin-py3-none-any.whl",
        "torchvision-0.29.1+standin-py3-none-any.whl",
    ]
    assert _uv("venv", "--python", "python3", "env", cwd=tmp_path).returncode == 0
    install = ("pip", "install", "--python", "env/bin/python", "--no-index", "--find-links")
    done = _uv(*install, "wheels", *REQUIREMENTS, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    check = "import torch, samgeo, samgeo.api; print(torch.cuda.is_available(), samgeo.__version__)"
    python = tmp_path / "env" / "bin" / "python"
    out = subprocess.run([python, "-c", check], capture_output=True, text=True, timeout=30)
    assert out.stdout.split() == ["False", "1.4.2"], out.stderr
    with start_standin(command=[str(tmp_path / "env" / "bin" / "samgeo-api")]) as server:
        assert server.get_json("/health") == {"status": "ok", "version": "1.4.2"}


@pytest.mark.slow
def test_wheelhouse_missing_or_broken_packages(tmp_path: Path) -> None:
    build_wheelhouse(tmp_path / "partial", omit=("torch",))
    assert _uv("venv", "--python", "python3", "env", cwd=tmp_path).returncode == 0
    install = ("pip", "install", "--python", "env/bin/python", "--no-index", "--find-links")
    missing = _uv(*install, "partial", *REQUIREMENTS, cwd=tmp_path)
    assert missing.returncode != 0 and "torch" in missing.stderr
    build_wheelhouse(tmp_path / "broken", broken=("samgeo",))
    assert _uv(*install, "broken", *REQUIREMENTS, cwd=tmp_path).returncode == 0
    python = tmp_path / "env" / "bin" / "python"
    out = subprocess.run([python, "-c", "import samgeo"], capture_output=True, text=True)
    assert out.returncode == 1 and "ImportError" in out.stderr
    shutil.rmtree(tmp_path / "uv-cache", ignore_errors=True)


def test_multipart_parser_survives_any_split_of_the_body(tmp_path: Path) -> None:
    rnd = random.Random(7)
    boundary = b"----standin42"
    payload = os.urandom(5000) + b"\r\n--" + boundary[:-1] + b"X\r\n-"  # near-misses
    body = (
        b"preamble\r\n--" + boundary + b'\r\nContent-Disposition: form-data; name="prompt"'
        b"\r\n\r\ntree \xc3\xa9\r\n--" + boundary + b"\r\nContent-Disposition: form-data; "
        b'name="file"; filename="a b.tif"\r\nContent-Type: image/tiff\r\n\r\n'
        + payload
        + b"\r\n--"
        + boundary
        + b"--\r\n"
    )

    async def pieces(cuts: list[int]) -> Any:
        for start, end in itertools.pairwise([0, *cuts, len(body)]):
            yield body[start:end]

    for trial in range(60):
        cuts = sorted(rnd.sample(range(1, len(body)), rnd.randint(0, 30)))
        form = asyncio.run(server_module.read_multipart(pieces(cuts), boundary, str(tmp_path)))
        assert form.fields == {"prompt": "tree é"}, trial
        upload = form.files["file"]
        assert (upload.filename, upload.path.read_bytes()) == ("a b.tif", payload), trial
        assert upload.sha256 == hashlib.sha256(payload).hexdigest()
    with pytest.raises(server_module.BadRequest):  # cut before the closing boundary
        asyncio.run(server_module.read_multipart(pieces([]), boundary + b"-other", str(tmp_path)))


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
