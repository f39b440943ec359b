"""samgeo-api's published schema, kept beside the tests that check against it.

A copy of ``shared/reference/samgeo-api-1.4.2.openapi.json`` (the steering
repository's reference) so the conformance tests run from any clone; a test
fails if the copy drifts from the original where the original is present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OPENAPI = Path(__file__).with_name("samgeo-api-1.4.2.openapi.json")
SHARED_OPENAPI = Path(__file__).resolve().parents[3] / "shared" / "reference" / OPENAPI.name


def openapi() -> dict[str, Any]:
    return json.loads(OPENAPI.read_text(encoding="utf-8"))
