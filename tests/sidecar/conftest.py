"""Fixtures shared by the sidecar tests: `managed` starts a sidecar that launches the
samgeo-api stand-in with fast restarts (a test module may define its own)."""

from __future__ import annotations

import pytest

from tests.sidecar.supervision import FAST


@pytest.fixture
def managed(sidecar_factory):
    def start(**env: str):
        return sidecar_factory(env={**FAST, **env})

    return start
