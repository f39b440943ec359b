"""Issue 17's memory figure: a ~200 MB and a ~2 GB GeoTIFF (tiled, DEFLATE, written on
the fly by the model environment's rasterio into a temporary folder, removed after)
through ``POST /ml/jobs`` on a pool of two instant stand-in backends, with the
sidecar's default tile size and overlap. Peak RSS of the sidecar and of the tile
worker for each; their ratio 2 GB / 200 MB says whether memory is flat (about 1.0)
or grows with the raster.

``python3 dev.py bench --only big-raster`` (``--quick``: 50 MB and 500 MB).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.benchmarks.common import Figure, new_marker
from tests.benchmarks.jobs_bench import on_real_stack
from tests.harness.sidecar import Sidecar, start_sidecar
from tests.realstack.jobs_helpers import model_python, read_events
from tests.standin.harness import start_standin

GENERATOR = Path(__file__).with_name("big_raster.py")
JOB_TIMEOUT_S = 1800.0


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (Linux: VmHWM); elsewhere its current RSS."""
    if sys.platform.startswith("linux"):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return psutil.Process(pid).memory_info().rss / 2**20


def make_big_raster(home: Path, path: Path, megabytes: float) -> dict:
    proc = subprocess.run(
        [str(model_python(home)), str(GENERATOR), str(path), str(megabytes)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _one_job(sidecar: Sidecar, path: Path) -> dict:
    """Send the raster (streamed from disk), follow the job to its end; the figures."""
    started = time.monotonic()
    with sidecar.client(timeout_s=JOB_TIMEOUT_S) as client, path.open("rb") as raster:
        answer = client.post(
            "/ml/jobs",
            data={"mode": "text", "prompt": "trees"},
            files={"file": ("big.tif", raster, "image/tiff")},
        )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    events = read_events(sidecar, job_id, timeout_s=JOB_TIMEOUT_S)
    assert events[-1]["state"] == "succeeded", events[-3:]
    elapsed = time.monotonic() - started
    worker = sidecar.status()["jobs"]["worker"]
    with sidecar.client() as client:
        state = client.get(f"/ml/jobs/{job_id}").json()
        client.delete(f"/ml/jobs/{job_id}")
    return {
        "seconds": elapsed,
        "tiles": state["tiles_total"],
        "features": state["features"],
        "sidecar_mb": peak_rss_mb(sidecar.pid),
        "worker_mb": peak_rss_mb(worker["pid"]),
    }


def measure(home: Path, folder: Path, quick: bool) -> list[Figure]:
    sizes = (50, 500) if quick else (200, 2000)
    runs = {}
    with contextlib.ExitStack() as stack:
        standins = [stack.enter_context(start_standin()) for _ in range(2)]
        env = {
            "GEOLIBRE_ML_SAMGEO_URL": standins[0].url,
            "GEOLIBRE_ML_JOB_BACKENDS": standins[1].url,
        }
        for megabytes in sizes:
            path = folder / f"big-{megabytes}.tif"
            made = make_big_raster(home, path, megabytes)
            # A fresh sidecar (and worker) per raster: each peak is that raster's alone.
            sidecar = start_sidecar(home, marker=new_marker(), env=env)
            try:
                runs[megabytes] = {**made, **_one_job(sidecar, path)}
            finally:
                sidecar.close()
                path.unlink()
    small, big = (runs[m] for m in sizes)
    figures = []
    for megabytes in sizes:
        run = runs[megabytes]
        label = f"{run['bytes'] / 1e6:,.0f} MB GeoTIFF ({run['width']} px square)"
        note = f"{run['tiles']} tiles, 2 backends, {run['seconds']:.0f} s"
        figures.append(Figure(f"{label}: sidecar peak RSS", run["sidecar_mb"], "MB", note=note))
        figures.append(Figure(f"{label}: tile worker peak RSS", run["worker_mb"], "MB"))
    for who in ("sidecar", "worker"):
        ratio = big[f"{who}_mb"] / small[f"{who}_mb"]
        figures.append(
            Figure(
                f"{who} peak RSS, {sizes[1]} MB / {sizes[0]} MB raster",
                ratio,
                "x",
                "<= 1.25",
                ratio <= 1.25,
                note="flat means about 1.0",
            )
        )
    return figures


def run(quick: bool) -> list[Figure]:
    return on_real_stack("big-raster", measure, quick)
