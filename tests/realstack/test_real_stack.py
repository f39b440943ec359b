"""Tier 2 (default suite): segmentation through the real sidecar, the real
samgeo-api from a real ``geolibre-ml install`` and a tiny real SAM 3.

The tests share one environment, one sidecar and one backend (building them is
what costs: minutes cold, about two warm); the weights test runs last because it
takes the weights away for a while.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.sidecar import Sidecar
from tests.harness.waiting import wait_until
from tests.realstack.stack import GeoTiff, RealStack

pytestmark = pytest.mark.realstack

PROMPT = "trees"
REFUSAL_DEADLINE_S = 2.0
REQUEST_TIMEOUT_S = 300.0  # covers the first request, which loads the model
STATUS_DEADLINE_S = 30.0
POLL_S = 0.2


def _post_text(client: httpx.Client, url: str, tif: GeoTiff, **fields: str) -> httpx.Response:
    return client.post(
        url,
        files={"file": ("scene.tif", tif.data, "image/tiff")},
        data={"prompt": PROMPT, **fields},
    )


def _positions(geometry: dict[str, Any]) -> Iterator[list[float]]:
    kind, coordinates = geometry["type"], geometry["coordinates"]
    rings = {"Polygon": [coordinates], "MultiPolygon": coordinates}[kind]
    for polygon in rings:
        for ring in polygon:
            yield from ring


@pytest.fixture(scope="module")
def via_sidecar(real_sidecar: Sidecar, geotiff: GeoTiff) -> httpx.Response:
    """The first request: it loads the model in samgeo-api."""
    with real_sidecar.client(timeout_s=REQUEST_TIMEOUT_S) as client:
        return _post_text(client, "/ml/segment/text", geotiff, backend="transformers")


def test_install_builds_the_pinned_spec_from_the_package_index(real_stack: RealStack) -> None:
    verify = real_stack.verify
    assert verify["torch"].startswith("2.14.1"), verify
    active = real_stack.active
    assert active.verify["imports"]["samgeo"], "samgeo imports in the model environment"
    assert active.record.get("sam3_backend") == "transformers", "no CUDA here: transformers"
    assert (active.server).is_file(), "the environment has its samgeo-api"


def test_text_prompt_gives_polygons_inside_the_raster_in_its_crs(
    via_sidecar: httpx.Response, geotiff: GeoTiff
) -> None:
    assert via_sidecar.status_code == 200, via_sidecar.text
    collection = via_sidecar.json()
    assert collection["type"] == "FeatureCollection"
    assert collection["crs"]["properties"]["name"].endswith(f"EPSG::{geotiff.epsg}")
    assert collection["features"], "the tiny model finds objects for any prompt"
    left, bottom, right, top = geotiff.bounds
    for feature in collection["features"]:
        assert 0.0 <= feature["properties"]["score"] <= 1.0
        for x, y in _positions(feature["geometry"]):
            assert left <= x <= right and bottom <= y <= top, (x, y, geotiff.bounds)


def test_the_sidecar_answers_what_samgeo_api_answers(
    real_sidecar: Sidecar, via_sidecar: httpx.Response, geotiff: GeoTiff
) -> None:
    direct_url = real_sidecar.status()["backend"]["url"]
    with httpx.Client(base_url=direct_url, timeout=REQUEST_TIMEOUT_S, trust_env=False) as client:
        direct = _post_text(client, "/segment/text", geotiff, backend="transformers")
    assert direct.status_code == 200, direct.text
    assert via_sidecar.json() == direct.json()


def test_a_request_without_backend_runs_the_installed_implementation(
    real_sidecar: Sidecar, via_sidecar: httpx.Response, geotiff: GeoTiff
) -> None:
    # As GeoLibre's dialog sends it: samgeo-api's own default (meta) needs CUDA.
    with real_sidecar.client(timeout_s=REQUEST_TIMEOUT_S) as client:
        response = _post_text(client, "/ml/segment/text", geotiff)
    assert response.status_code == 200, response.text
    assert response.json() == via_sidecar.json()


@pytest.mark.parametrize(
    ("mode", "fields"),
    [("automatic", {}), ("predict", {"point_coords": "[[10, 10]]", "point_labels": "[1]"})],
)
def test_meta_only_modes_are_refused_at_once(
    real_sidecar: Sidecar, geotiff: GeoTiff, mode: str, fields: dict[str, str]
) -> None:
    with real_sidecar.client(timeout_s=REQUEST_TIMEOUT_S) as client:
        started = time.monotonic()
        response = client.post(
            f"/ml/segment/{mode}",
            files={"file": ("scene.tif", geotiff.data, "image/tiff")},
            data=fields,
        )
        elapsed = time.monotonic() - started
    assert response.status_code == 501, response.text
    assert elapsed < REFUSAL_DEADLINE_S
    detail = response.json()["detail"]
    assert "CUDA" in detail and "text" in detail, detail


def test_available_only_while_the_weights_are_in_place(
    real_sidecar: Sidecar, real_stack: RealStack, via_sidecar: httpx.Response
) -> None:
    assert via_sidecar.status_code == 200  # the backend is up and has answered
    assert real_sidecar.status()["available"] is True
    repo = real_stack.tiny_repo
    aside = repo.with_name(repo.name + ".aside")
    repo.rename(aside)
    try:
        status = wait_until(
            lambda: (s := real_sidecar.status())["available"] is False and s,
            timeout_s=STATUS_DEADLINE_S,
            interval_s=POLL_S,
            what="status to say unavailable once the weights are gone",
        )
        said = " ".join([status["message"], *status["hints"]])
        assert "weights" in said, said
    finally:
        Path(aside).rename(repo)
    wait_until(
        lambda: real_sidecar.status()["available"] is True,
        timeout_s=STATUS_DEADLINE_S,
        interval_s=POLL_S,
        what="status to say available once the weights are back",
    )
