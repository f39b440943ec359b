"""Tier 2: GEOLIBRE_ML_PREWARM=1 with the real samgeo-api and the tiny SAM 3.

Its own module: a second sidecar on the same home must not run beside the
other module's one (they would share the backend record).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.harness.processes import with_marker
from tests.harness.sidecar import start_sidecar
from tests.harness.waiting import wait_until
from tests.realstack.stack import GeoTiff, RealStack, kill_marked

pytestmark = pytest.mark.realstack

LOAD_DEADLINE_S = 300.0
# samgeo-api 1.4.2's cache key for a text request with the installed implementation and
# its default threshold: what the app's first click (no backend, no threshold) asks for.
APP_DEFAULT_KEY = [
    "sam3",
    "facebook/sam3",
    [["backend", "transformers"], ["confidence_threshold", 0.5]],
]


POLL_S = 0.2  # each probe builds a client: polling hard would slow the start on two cores


def _loaded(url: str) -> list[Any] | None:
    """samgeo-api's loaded models; None while it cannot answer (busy loading)."""
    try:
        answer = httpx.get(f"{url}/models", timeout=5, trust_env=False)
    except httpx.HTTPError:
        return None
    return answer.json()["loaded"] if answer.status_code == 200 else None


def test_prewarm_loads_the_model_the_first_click_uses(
    real_stack: RealStack, tiny_weights: dict[str, Any], geotiff: GeoTiff
) -> None:
    sidecar = start_sidecar(
        real_stack.home, marker=real_stack.marker, env={"GEOLIBRE_ML_PREWARM": "1"}
    )
    try:
        # Nobody asks for anything: the sidecar starts samgeo-api and loads SAM 3 itself.
        url = wait_until(
            lambda: sidecar.status()["backend"]["url"],
            timeout_s=LOAD_DEADLINE_S,
            interval_s=POLL_S,
            what="the prewarmed backend to be launched",
        )
        loaded = wait_until(
            lambda: _loaded(url),
            timeout_s=LOAD_DEADLINE_S,
            interval_s=POLL_S,
            what="the prewarm to load SAM 3",
        )
        assert loaded == [APP_DEFAULT_KEY]
        with sidecar.client(timeout_s=LOAD_DEADLINE_S) as client:
            response = client.post(
                "/ml/segment/text",
                files={"file": ("scene.tif", geotiff.data, "image/tiff")},
                data={"prompt": "trees", "model_version": "sam3", "output_format": "geojson"},
            )
        assert response.status_code == 200, response.text
        assert _loaded(url) == loaded, "the first request used the prewarmed model"
    finally:
        sidecar.close()
        try:
            wait_until(
                lambda: not with_marker(real_stack.marker),
                timeout_s=30,
                interval_s=POLL_S,
                what="the sidecar's samgeo-api to exit with it",
            )
        finally:
            kill_marked(real_stack.marker)
