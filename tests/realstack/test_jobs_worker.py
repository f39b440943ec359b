"""The tile worker (cut and merge in the model environment) as a supervised process:
started on the first job, restarted after a crash with the job going on without
redoing finished work, reported in ``/ml/status``, gone with the sidecar. Real
processes throughout: the real sidecar, the real model environment's rasterio, the
stand-in samgeo-api for the tiles."""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness.processes import wait_gone
from tests.harness.sidecar import Sidecar, start_sidecar
from tests.harness.waiting import wait_until
from tests.realstack.jobs_helpers import make_raster, marker, submit, wait_state
from tests.realstack.stack import RealStack
from tests.standin.harness import StandinProcess, start_standin

pytestmark = pytest.mark.realstack

# Many small tiles, so the cut runs long enough (about a second here) to be killed
# in the middle: 25 x 25 tiles of 64 px.
SIDE, TILE = 1600, 64
TILES = (SIDE // TILE) ** 2


@pytest.fixture(scope="module")
def home(real_stack: RealStack) -> Path:
    return real_stack.home


@pytest.fixture(scope="module")
def raster(home: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("worker") / "many-tiles.tif"
    make_raster(home, path, SIDE, SIDE)
    return path.read_bytes()


@pytest.fixture
def standin() -> Iterator[StandinProcess]:
    with start_standin() as process:
        yield process


@pytest.fixture
def sidecar(home: Path, standin: StandinProcess) -> Iterator[Sidecar]:
    process = start_sidecar(home, marker=marker(), env={"GEOLIBRE_ML_SAMGEO_URL": standin.url})
    try:
        yield process
    finally:
        process.close()


def worker_status(sidecar: Sidecar) -> dict:
    return sidecar.status()["jobs"]["worker"]


def wait_for_event(sidecar: Sidecar, job_id: str, kind: str) -> dict:
    """Follow the job's events until one of ``kind`` (the stream is left then)."""
    with (
        sidecar.client(timeout_s=60) as client,
        client.stream("GET", f"/ml/jobs/{job_id}/events") as stream,
    ):
        for line in stream.iter_lines():
            if line.startswith("data: ") and (event := json.loads(line[6:]))["event"] == kind:
                return event
    raise AssertionError(f"the job ended without a {kind!r} event")


def tile_files(home: Path, job_id: str) -> dict[str, tuple[int, int]]:
    """Each cut tile with its inode and modification time: rewritten means changed."""
    folder = home / "data" / "jobs" / job_id / "tiles"
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("*.tif")}


def test_the_worker_killed_mid_cut_is_restarted_and_the_job_keeps_its_finished_tiles(
    sidecar: Sidecar, home: Path, raster: bytes, standin: StandinProcess
) -> None:
    assert worker_status(sidecar)["state"] == "not_started", "started on the first job only"
    with sidecar.client() as client:
        job = submit(client, raster, tile_size=TILE, overlap=0).json()
    cut = wait_for_event(sidecar, job["id"], "cut")
    assert cut["done"] < cut["total"] == TILES
    first = worker_status(sidecar)
    assert first["state"] == "ready" and first["restarts"] == 0
    psutil.Process(first["pid"]).send_signal(signal.SIGKILL)
    wait_gone([first["pid"]], timeout_s=10, what="the killed worker")
    kept = tile_files(home, job["id"])
    assert 50 <= len(kept) < TILES, "killed in the middle of the cut"

    state = wait_state(
        sidecar, job["id"], lambda s: s["state"] in ("succeeded", "failed"), timeout_s=120,
        what="the job to end",
    )  # fmt: skip
    if state["state"] != "succeeded":
        print("SIDECAR STDERR", sidecar.stderr()[-5000:])
        print("WORKER LOG", (home / "logs" / "tile-worker.log").read_text()[-3000:])
    assert state["state"] == "succeeded", state["error"]
    assert (state["tiles_done"], state["tiles_total"], state["failures"]) == (TILES, TILES, [])
    after = worker_status(sidecar)
    assert after["state"] == "ready" and after["restarts"] == 1, after
    assert after["pid"] != first["pid"] and "SIGKILL" in after["last_exit"]
    # The tiles cut before the kill were kept as they were, not cut again.
    now = tile_files(home, job["id"])
    assert {name: now[name] for name in kept} == kept
    assert int(standin.stats()["segment_requests"]) == TILES, "each tile segmented once"
    log = Path(after["log"])
    assert log.is_file() and "geolibre guard" in log.read_text(encoding="utf-8")


def test_cancelling_a_job_mid_cut_stops_the_workers_cut_and_the_next_job_gets_a_new_one(
    sidecar: Sidecar, home: Path, raster: bytes, standin: StandinProcess
) -> None:
    with sidecar.client() as client:
        job = submit(client, raster, tile_size=TILE, overlap=0).json()
        wait_for_event(sidecar, job["id"], "cut")
        cutting = worker_status(sidecar)
        assert client.delete(f"/ml/jobs/{job['id']}").json()["state"] == "cancelled"
    # The only way to stop a cut at once is to stop the worker doing it.
    wait_gone([cutting["pid"]], timeout_s=10, what="the worker cutting the cancelled job")
    assert worker_status(sidecar)["state"] == "stopped"
    assert worker_status(sidecar)["restarts"] == 0, "a stop we asked for is not a crash"
    cut = tile_files(home, job["id"])
    assert len(cut) < TILES
    assert int(standin.stats()["segment_requests"]) == 0
    with sidecar.client() as client:
        again = submit(client, raster, tile_size=TILE, overlap=0).json()
    state = wait_state(
        sidecar, again["id"], lambda s: s["state"] in ("succeeded", "failed"), timeout_s=120,
        what="the next job to end",
    )  # fmt: skip
    assert state["state"] == "succeeded", state["error"]
    assert worker_status(sidecar)["pid"] not in (None, cutting["pid"])


def test_a_corrupt_raster_fails_with_one_sentence_and_leaves_only_the_idle_worker(
    sidecar: Sidecar, standin: StandinProcess
) -> None:
    with sidecar.client() as client:
        job = submit(client, b"II*\x00 this is not a GeoTIFF" * 50).json()
    state = wait_state(
        sidecar, job["id"], lambda s: s["state"] == "failed", timeout_s=60, what="the job to fail"
    )
    detail = state["error"]["detail"]
    assert detail.startswith("The raster could not be read") and "Traceback" not in detail
    assert detail.endswith(".") and "\n" not in detail, detail
    worker = worker_status(sidecar)
    assert worker["state"] == "ready" and worker["restarts"] == 0
    # Nothing runs for the failed job: the sidecar's only descendants are the idle
    # worker and its guard, and the worker has no children of its own.
    guard = psutil.Process(worker["pid"]).parent()
    assert sorted(sidecar.descendants()) == sorted([guard.pid, worker["pid"]])
    assert psutil.Process(worker["pid"]).children() == []
    assert int(standin.stats()["segment_requests"]) == 0


@pytest.mark.parametrize("how", ["stop", "sigkill"])
def test_the_worker_goes_with_the_sidecar(
    home: Path, raster: bytes, standin: StandinProcess, how: str
) -> None:
    process = start_sidecar(home, marker=marker(), env={"GEOLIBRE_ML_SAMGEO_URL": standin.url})
    try:
        with process.client() as client:
            job = submit(client, raster, tile_size=TILE, overlap=0).json()
        wait_until(
            lambda: worker_status(process)["state"] == "ready",
            timeout_s=60,
            interval_s=0.05,
            what="the worker to start",
        )
        tree = process.descendants()
        assert worker_status(process)["pid"] in tree
        if how == "stop":
            process.terminate()
        else:  # no clean-up code runs: the guard's parent-death signal does it
            process.proc.send_signal(signal.SIGKILL)
            process.proc.wait(timeout=10)
        wait_gone(tree, timeout_s=15, what="the worker and its guard")
    finally:
        process.close()
    # The job stays on disk, active, for the next sidecar to resume; not in this shared
    # home, where it would send tiles to the next test's stand-in.
    folder = home / "data" / "jobs" / job["id"]
    record = json.loads((folder / "job.json").read_text("utf-8"))
    shutil.rmtree(folder)
    assert record["state"] not in ("succeeded", "failed", "cancelled")
