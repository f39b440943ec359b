"""Issue 17's figures: tiled jobs over a pool of equal backends (stand-ins that take a
fixed time per tile) with the real model environment cutting and merging.

- the speed-up with 1, 2 and 4 backends against the ideal linear one;
- the overhead of tiling (cut, dispatch, merge) per tile, against the backend's time:
  for a sidecar's first job (the tile worker starts) and for the next (it is running).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from tests.benchmarks.common import Figure, new_marker, temp_home
from tests.harness.sidecar import start_sidecar
from tests.realstack.jobs_helpers import make_raster, read_events, submit
from tests.realstack.stack import install_real_stack, kill_marked
from tests.standin.harness import StandinProcess, start_standin

TILE = 256
INFER_S = 0.5  # each stand-in's fixed time per tile, like a GPU's


def _job_seconds(
    home: Path, raster: bytes, urls: list[str], marker: str, jobs: int = 1
) -> list[float]:
    """Each of ``jobs`` jobs run one after the other on one new sidecar: its seconds."""
    env = {"GEOLIBRE_ML_SAMGEO_URL": urls[0], "GEOLIBRE_ML_JOB_BACKENDS": ",".join(urls[1:])}
    sidecar = start_sidecar(home, marker=marker, env=env)
    seconds = []
    try:
        for _ in range(jobs):
            started = time.monotonic()
            with sidecar.client() as client:
                job = submit(client, raster, tile_size=TILE, overlap=0).json()
            events = read_events(sidecar, job["id"], timeout_s=600)
            seconds.append(time.monotonic() - started)
            assert events[-1]["state"] == "succeeded", events[-3:]
            with sidecar.client() as client:
                client.delete(f"/ml/jobs/{job['id']}")
        return seconds
    finally:
        sidecar.close()


def measure(home: Path, folder: Path, quick: bool) -> list[Figure]:
    side = 4 if quick else 6  # tiles per side: 16 or 36 tiles
    tiles = side * side
    path = folder / "pool.tif"
    make_raster(home, path, side * TILE, side * TILE)
    raster = path.read_bytes()
    marker = new_marker()
    figures = []
    with contextlib.ExitStack() as stack:
        standins: list[StandinProcess] = [
            stack.enter_context(start_standin(env={"STANDIN_INFER_S": str(INFER_S)}))
            for _ in range(4)
        ]
        urls = [s.url for s in standins]
        seconds = {n: _job_seconds(home, raster, urls[:n], marker)[0] for n in (1, 2, 4)}
        for standin in standins:
            standin.set_switches(infer_s=0.0)
        first, warm = _job_seconds(home, raster, urls[:1], marker, jobs=2)
    for n in (1, 2, 4):
        speedup = seconds[1] / seconds[n]
        figures.append(
            Figure(
                f"{tiles} tiles, {n} backend(s) of {INFER_S} s a tile: job time",
                seconds[n],
                "s",
                note=f"speed-up {speedup:.2f} of ideal {n}",
            )
        )
    ratio = seconds[1] / seconds[4] / 4
    figures.append(Figure("speed-up at 4 backends / ideal", ratio, "x", ">= 0.9", ratio >= 0.9))
    for which, bare in (("first job", first), ("next job", warm)):
        figures.append(
            Figure(
                f"tiling overhead per tile, {which} (cut, dispatch, merge; instant backend)",
                bare / tiles * 1000,
                "ms",
                note=f"backend's own time: {INFER_S * 1000:.0f} ms",
            )
        )
    return figures


def on_real_stack(
    prefix: str, measure: Callable[[Path, Path, bool], list[Figure]], quick: bool
) -> list[Figure]:
    """``measure(home, folder, quick)`` with the real model environment installed in a
    temporary home (``folder`` holds it, and is removed after)."""
    with temp_home(prefix) as folder:
        marker = new_marker()
        try:
            stack = install_real_stack(Path(folder) / "home", marker)
            return measure(stack.home, Path(folder), quick)
        finally:
            kill_marked(marker)


def run(quick: bool) -> list[Figure]:
    return on_real_stack("jobs", measure, quick)
