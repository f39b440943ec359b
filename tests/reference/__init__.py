"""samgeo-api's published schema and the GeoLibre app's contract, kept beside the
tests that check against them.

Copies of ``shared/reference/samgeo-api-1.4.2.openapi.json`` and
``geolibre-desktop.md`` (the steering repository's reference) so the conformance
tests run from any clone; a test fails if a copy drifts from the original where
the original is present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OPENAPI = Path(__file__).with_name("samgeo-api-1.4.2.openapi.json")
SHARED_REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
SHARED_OPENAPI = SHARED_REFERENCE / OPENAPI.name
APP_CONTRACT = Path(__file__).with_name("geolibre-desktop.md")


def openapi() -> dict[str, Any]:
    return json.loads(OPENAPI.read_text(encoding="utf-8"))
