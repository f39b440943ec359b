"""Helpers for the tiled-job tests: a raster from the model environment's rasterio,
a job sent to a sidecar, its server-sent events read until the end."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.harness.sidecar import Sidecar
from tests.harness.waiting import wait_until

HERE = Path(__file__).parent


def model_python(home: Path) -> Path:
    from geolibre_env.model_env import active_environment
    from geolibre_env.paths import Paths

    active = active_environment(Paths.resolve(home))
    assert active is not None, "no model environment in the test home"
    return active.python


def make_raster(home: Path, path: Path, width: int, height: int, nodata_cols: int = 0) -> dict:
    """An RGB GeoTIFF in EPSG:32611 written by the model environment's rasterio."""
    proc = subprocess.run(
        [
            str(model_python(home)),
            str(HERE / "job_raster.py"),
            str(path),
            str(width),
            str(height),
            str(nodata_cols),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def submit(
    client: httpx.Client, raster: bytes, *, mode: str = "text", **fields: str | int
) -> httpx.Response:
    form = {"mode": mode, **({"prompt": "trees"} if mode == "text" else {}), **fields}
    files = {"file": ("scene.tif", raster, "image/tiff")}
    return client.post("/ml/jobs", data={k: str(v) for k, v in form.items()}, files=files)


def read_events(sidecar: Sidecar, job_id: str, after: int = 0, timeout_s: float = 120) -> list:
    """Every event after ``after`` until the stream ends (the job ended)."""
    headers = {"Last-Event-ID": str(after)} if after else {}
    events = []
    path = f"/ml/jobs/{job_id}/events"
    with (
        sidecar.client(timeout_s=timeout_s) as client,
        client.stream("GET", path, headers=headers) as stream,
    ):
        assert stream.status_code == 200, stream.read()
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


def job_state(sidecar: Sidecar, job_id: str) -> dict[str, Any]:
    with sidecar.client() as client:
        answer = client.get(f"/ml/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_state(sidecar: Sidecar, job_id: str, check: Any, *, timeout_s: float, what: str) -> dict:
    return wait_until(
        lambda: (s := job_state(sidecar, job_id)) and check(s) and s,
        timeout_s=timeout_s,
        interval_s=0.1,
        what=what,
    )


def marker() -> str:
    return f"gltest-jobs-{uuid.uuid4().hex[:10]}"
