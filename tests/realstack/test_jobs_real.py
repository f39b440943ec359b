"""Tier 2 (default suite): a tiled job end to end on the real stack: the real sidecar,
the model environment's rasterio and shapely cutting and merging, the real samgeo-api
with the tiny SAM 3 segmenting every tile. Kept to four tiles (about a minute on two
cores, most of it loading the model for the first tile)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness.sidecar import Sidecar
from tests.realstack.jobs_helpers import job_state, read_events, submit
from tests.realstack.stack import GeoTiff

pytestmark = pytest.mark.realstack

# The 256 px GeoTIFF at tile 160, overlap 32: columns and rows at 0 and 96.
TILE, OVERLAP, TILES = 160, 32, 4
JOB_TIMEOUT_S = 300.0
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_a_job_on_the_real_samgeo_api_segments_every_tile_and_merges_them(
    real_sidecar: Sidecar, geotiff: GeoTiff
) -> None:
    with real_sidecar.client() as client:
        answer = submit(client, geotiff.data, tile_size=TILE, overlap=OVERLAP)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    events = read_events(real_sidecar, job_id, timeout_s=JOB_TIMEOUT_S)
    assert events[-1]["state"] == "succeeded", events[-3:]
    tiles = [e for e in events if e["event"] == "tile"]
    assert sorted(e["tile"] for e in tiles) == list(range(TILES))
    state = job_state(real_sidecar, job_id)
    assert (state["tiles_done"], state["tiles_total"], state["failures"]) == (TILES, TILES, [])

    with real_sidecar.client() as client:
        result = client.get(f"/ml/jobs/{job_id}/result")
    assert result.status_code == 200
    collection = result.json()
    assert collection["crs"]["properties"]["name"] == f"urn:ogc:def:crs:EPSG::{geotiff.epsg}"
    assert collection["features"], "the tiny model finds objects for any prompt"
    left, bottom, right, top = geotiff.bounds
    for feature in collection["features"]:
        assert set(feature["properties"]["tiles"]) <= set(range(TILES))
        geometry = feature["geometry"]
        polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else []
        polygons += geometry["coordinates"] if geometry["type"] == "MultiPolygon" else []
        for x, y in (p for polygon in polygons for ring in polygon for p in ring):
            assert left - 1e-6 <= x <= right + 1e-6 and bottom - 1e-6 <= y <= top + 1e-6

    # Tiles per second once the model is loaded (the first tile loads it): a README figure.
    times = [e["time"] for e in tiles]
    warm = (len(times) - 1) / (times[-1] - times[0]) if times[-1] > times[0] else None
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "jobs-real-stack.json").write_text(
        json.dumps(
            {
                "tiles": TILES,
                "tile_px": TILE,
                "elapsed_s": state["elapsed_s"],
                "warm_tiles_per_s": warm,
                "features": state["features"],
            },
            indent=1,
        )
    )
