"""Tier 2: the real stack on this machine, with nothing faked between the sidecar
and SAM 3's code.

``geolibre-ml install`` builds the pinned spec from the package index into a
test home (uv's cache persists outside the repository, so later runs are warm),
``geolibre-ml verify`` checks it, a tiny randomly initialised SAM 3 stands in
for the gated weights, and the real sidecar launches the real samgeo-api from
that environment.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness.sidecar import Sidecar
from tests.realstack.stack import (
    GeoTiff,
    RealStack,
    install_real_stack,
    kill_marked,
    make_geotiff,
    running_sidecar,
    write_tiny_weights,
)


@pytest.fixture(scope="session")
def real_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealStack]:
    """``geolibre-ml install`` and ``verify`` for real, as a user runs them."""
    home = tmp_path_factory.mktemp("realstack") / "geolibre home"
    marker = f"gltest-real-{uuid.uuid4().hex[:10]}"
    try:
        yield install_real_stack(home, marker)
    finally:
        kill_marked(marker)
        # About 7 GB, mostly hard links into uv's cache: never kept between runs.
        shutil.rmtree(home.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_weights(real_stack: RealStack) -> dict[str, Any]:
    return write_tiny_weights(real_stack)


@pytest.fixture(scope="session")
def geotiff(real_stack: RealStack, tmp_path_factory: pytest.TempPathFactory) -> GeoTiff:
    return make_geotiff(real_stack, tmp_path_factory.mktemp("geotiff") / "scene.tif")


@pytest.fixture(scope="module")
def real_sidecar(real_stack: RealStack, tiny_weights: dict[str, Any]) -> Iterator[Sidecar]:
    """The real sidecar with only GEOLIBRE_ML_HOME set, its samgeo-api started."""
    with running_sidecar(real_stack) as sidecar:
        yield sidecar
