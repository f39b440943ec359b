"""Tiled jobs (``/ml/jobs``) through the real sidecar, with the real model environment
cutting and merging (rasterio, shapely) and samgeo-api stand-ins answering the tiles
(the real samgeo-api's job is in test_jobs_real.py): progress events for every tile,
resumable events, the merged result, cancel, a restart mid-job, a crashing backend in
the pool, bad input (a corrupt raster: test_jobs_worker.py)."""

from __future__ import annotations

import http.server
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.processes import wait_gone
from tests.harness.sidecar import Sidecar, start_sidecar
from tests.realstack.jobs_helpers import (
    job_state,
    make_raster,
    marker,
    read_events,
    submit,
    wait_state,
)
from tests.realstack.stack import RealStack
from tests.standin.harness import StandinProcess, start_standin

pytestmark = pytest.mark.realstack

# 600 x 500 px at tile 256, overlap 32: columns at 0, 224, 344 and rows at 0, 224, 244.
WIDTH, HEIGHT, TILE, OVERLAP = 600, 500, 256, 32
TILES = 9


@pytest.fixture(scope="module")
def home(real_stack: RealStack) -> Path:
    return real_stack.home


@pytest.fixture(scope="module")
def raster(home: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict]:
    path = tmp_path_factory.mktemp("jobs") / "scene.tif"
    made = make_raster(home, path, WIDTH, HEIGHT)
    return path.read_bytes(), made


@pytest.fixture
def standin() -> Iterator[StandinProcess]:
    with start_standin() as process:
        yield process


def sidecar_for(home: Path, url: str, tag: str, **env: str) -> Sidecar:
    return start_sidecar(home, marker=tag, env={"GEOLIBRE_ML_SAMGEO_URL": url, **env})


@pytest.fixture
def sidecar(home: Path, standin: StandinProcess) -> Iterator[Sidecar]:
    process = sidecar_for(home, standin.url, marker())
    try:
        yield process
    finally:
        process.close()


def segment_requests(standin: StandinProcess) -> int:
    return int(standin.stats()["segment_requests"])


def test_a_job_reports_every_tile_and_returns_merged_geojson_in_the_rasters_crs(
    sidecar: Sidecar, raster: tuple[bytes, dict], standin: StandinProcess
) -> None:
    data, made = raster
    with sidecar.client() as client:
        answer = submit(client, data, tile_size=TILE, overlap=OVERLAP)
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["state"] in ("queued", "cutting") and job["id"]

    events = read_events(sidecar, job["id"])
    tiles = [e for e in events if e["event"] == "tile"]
    assert sorted(e["tile"] for e in tiles) == list(range(TILES))
    assert [e["done"] for e in tiles] == list(range(1, TILES + 1))
    assert all(e["total"] == TILES for e in tiles)
    assert events[-1]["event"] == "end" and events[-1]["state"] == "succeeded"
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert segment_requests(standin) == TILES

    # Resumable: after the fifth event, exactly the rest.
    assert read_events(sidecar, job["id"], after=ids[4]) == events[5:]

    state = job_state(sidecar, job["id"])
    assert state["state"] == "succeeded"
    assert (state["tiles_done"], state["tiles_total"], state["failures"]) == (TILES, TILES, [])
    with sidecar.client() as client:
        result = client.get(f"/ml/jobs/{job['id']}/result")
    assert result.status_code == 200
    collection = result.json()
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32611"
    assert collection["features"], "the stand-in finds 1-3 boxes in every tile"
    left, bottom, right, top = made["bounds"]
    for feature in collection["features"]:
        assert feature["properties"]["tiles"] and feature["properties"]["score"] > 0
        rings = feature["geometry"]["coordinates"]
        if feature["geometry"]["type"] == "MultiPolygon":
            rings = [ring for polygon in rings for ring in polygon]
        for x, y in (point for ring in rings for point in ring):
            assert left - 1e-6 <= x <= right + 1e-6 and bottom - 1e-6 <= y <= top + 1e-6


def test_tiles_with_only_nodata_are_skipped(
    sidecar: Sidecar, home: Path, tmp_path: Path, standin: StandinProcess
) -> None:
    path = tmp_path / "half-empty.tif"
    make_raster(home, path, WIDTH, HEIGHT, nodata_cols=300)  # columns 0 and 224 are empty
    with sidecar.client() as client:
        job = submit(client, path.read_bytes(), tile_size=TILE, overlap=OVERLAP).json()
    ended = ("succeeded", "failed", "cancelled")
    state = wait_state(
        sidecar, job["id"], lambda s: s["state"] in ended, timeout_s=60, what="the job to end"
    )
    assert state["state"] == "succeeded", state
    assert (state["tiles_total"], state["tiles_skipped"]) == (6, 3)
    assert segment_requests(standin) == 6


def test_cancel_stops_sending_tiles_at_once(
    sidecar: Sidecar, raster: tuple[bytes, dict], standin: StandinProcess
) -> None:
    standin.set_switches(infer_s=0.5)
    with sidecar.client() as client:
        job = submit(client, raster[0], tile_size=TILE, overlap=OVERLAP).json()
        running = wait_state(
            sidecar, job["id"], lambda s: s["tiles_done"] >= 1, timeout_s=60, what="a first tile"
        )
        # About 0.5 s a tile for the tiles left: an estimate in that range, not a guess.
        left = TILES - running["tiles_done"]
        assert running["state"] == "running" and running["elapsed_s"] >= 0.5
        assert 0.25 * left <= running["estimated_left_s"] <= 2.0 * left + 1.0
        cancelled = client.delete(f"/ml/jobs/{job['id']}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    at_cancel = segment_requests(standin)
    # The tile the stand-in was computing may still arrive; no new one may start. A
    # window of several tile times is the only way to see that nothing more comes.
    time.sleep(4 * 0.5)
    assert segment_requests(standin) == at_cancel
    assert at_cancel < TILES
    events = read_events(sidecar, job["id"])
    assert events[-1]["state"] == "cancelled"
    with sidecar.client() as client:
        assert client.get(f"/ml/jobs/{job['id']}/result").status_code == 409
        deleted = client.delete(f"/ml/jobs/{job['id']}")
        assert deleted.json() == {"id": job["id"], "deleted": True}
        assert client.get(f"/ml/jobs/{job['id']}").status_code == 404


def test_a_job_resumes_after_the_sidecar_is_killed_without_redoing_finished_tiles(
    home: Path, raster: tuple[bytes, dict], standin: StandinProcess
) -> None:
    standin.set_switches(infer_s=0.3)
    tag = marker()
    first = sidecar_for(home, standin.url, tag)
    try:
        with first.client() as client:
            job = submit(client, raster[0], tile_size=TILE, overlap=OVERLAP).json()
        wait_state(
            first, job["id"], lambda s: s["tiles_done"] >= 3, timeout_s=60, what="three tiles"
        )
        tree = first.descendants()  # the tile worker and its guard
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
        wait_gone(tree, timeout_s=15, what="the killed sidecar's tile worker")
    finally:
        first.close()
    done_before = len(list((home / "data" / "jobs" / job["id"] / "results").glob("*.json")))
    assert 3 <= done_before < TILES
    second = sidecar_for(home, standin.url, tag)
    try:
        state = wait_state(
            second,
            job["id"],
            lambda s: s["state"] == "succeeded",
            timeout_s=60,
            what="the resumed job to finish",
        )
        assert state["tiles_done"] == TILES
        # Tiles finished before the kill were not sent again: at most the one in flight.
        assert segment_requests(standin) <= TILES + 1
        events = read_events(second, job["id"])
        resumed = [e for e in events if e.get("resumed")]
        assert resumed, "the new sidecar says it resumed the job"
        after = [e["tile"] for e in events[events.index(resumed[0]) :] if e["event"] == "tile"]
        assert len(after) == TILES - done_before
    finally:
        second.close()


def test_a_tile_that_fails_on_a_crashing_backend_is_done_by_another(
    home: Path, raster: tuple[bytes, dict], standin: StandinProcess
) -> None:
    with start_standin(env={"STANDIN_MODE": "crash"}) as crashing:
        process = sidecar_for(home, crashing.url, marker(), GEOLIBRE_ML_JOB_BACKENDS=standin.url)
        try:
            with process.client() as client:
                job = submit(client, raster[0], tile_size=TILE, overlap=OVERLAP).json()
            events = read_events(process, job["id"])
            state = job_state(process, job["id"])
        finally:
            process.close()
    assert state["state"] == "succeeded", state
    assert (state["tiles_done"], state["failures"]) == (TILES, [])
    retried = [e for e in events if e["event"] == "tile_retry"]
    assert retried and all(e["backend"] == "local" for e in retried)
    tiles = [e for e in events if e["event"] == "tile"]
    assert {e["backend"] for e in tiles} == {standin.url}
    assert segment_requests(standin) == TILES


def test_bad_requests_are_refused_with_a_sentence_and_leave_no_job(
    sidecar: Sidecar, home: Path, raster: tuple[bytes, dict]
) -> None:
    jobs_dir = home / "data" / "jobs"
    before = set(jobs_dir.iterdir()) if jobs_dir.exists() else set()
    with sidecar.client() as client:
        cases = {
            "mode": submit(client, raster[0], mode="nope"),
            "prompt": client.post(
                "/ml/jobs", data={"mode": "text"}, files={"file": ("a.tif", raster[0])}
            ),
            "tile": submit(client, raster[0], tile_size=10),
            "overlap": submit(client, raster[0], tile_size=256, overlap=200),
        }
        missing = client.get("/ml/jobs/no-such-job")
        unauthorised = client.get("/ml/jobs", headers={"X-GeoLibre-Token": "wrong"})
    for name, answer in cases.items():
        assert answer.status_code == 422, (name, answer.text)
        assert answer.json()["detail"].endswith("."), name
    assert "mode" in cases["mode"].json()["detail"]
    assert "prompt" in cases["prompt"].json()["detail"]
    assert missing.status_code == 404 and "no job" in missing.json()["detail"]
    assert unauthorised.status_code == 401
    after = set(jobs_dir.iterdir()) if jobs_dir.exists() else set()
    assert after == before


class _Refuses(http.server.BaseHTTPRequestHandler):
    """A server that wants other credentials (as a remote samgeo-api behind a proxy)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b'{"detail":"Not authenticated"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def refusing_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://user:wrong-secret@127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_remote_backend_answering_401_is_set_aside_and_status_says_so(
    home: Path, raster: tuple[bytes, dict], standin: StandinProcess, refusing_server: str
) -> None:
    standin.set_switches(infer_s=0.5)
    process = sidecar_for(home, standin.url, marker(), GEOLIBRE_ML_JOB_BACKENDS=refusing_server)
    try:
        with process.client() as client:
            job = submit(client, raster[0], tile_size=TILE, overlap=OVERLAP).json()
        events = read_events(process, job["id"])
        state = job_state(process, job["id"])
        status = process.status()
        log = process.stderr()
    finally:
        process.close()
    assert state["state"] == "succeeded" and state["failures"] == [], state
    remote = refusing_server.split("@")[1]
    [aside] = [e for e in events if e["event"] == "backend_set_aside"]
    assert aside["backend"] == f"http://{remote}" and "credentials" in aside["detail"]
    backends = {b["name"]: b for b in status["jobs"]["backends"]}
    assert backends[f"http://{remote}"]["set_aside"] is True
    assert backends["local"]["set_aside"] is False
    assert "wrong-secret" not in json.dumps(status) + json.dumps(events) + log


def test_a_remote_backend_that_times_out_loses_its_tiles_to_another(
    home: Path, raster: tuple[bytes, dict], standin: StandinProcess
) -> None:
    with start_standin(env={"STANDIN_INFER_S": "6"}) as slow:
        process = sidecar_for(
            home,
            standin.url,
            marker(),
            GEOLIBRE_ML_JOB_BACKENDS=slow.url,
            GEOLIBRE_ML_UPSTREAM_TIMEOUT_S="1.5",
        )
        try:
            with process.client() as client:
                job = submit(client, raster[0], tile_size=TILE, overlap=OVERLAP).json()
            events = read_events(process, job["id"])
        finally:
            process.close()
    assert events[-1]["state"] == "succeeded", events[-3:]
    retried = [e for e in events if e["event"] == "tile_retry"]
    assert retried and all("no answer within 1.5 s" in e["detail"] for e in retried)
    assert {e["backend"] for e in events if e["event"] == "tile"} == {"local"}
