"""GEOLIBRE_ML_PREWARM where there is nothing of ours to warm: the sidecar leaves
the backend alone and says why. (Tier 2, tests/realstack/test_prewarm.py, covers
a real installed environment, where it starts samgeo-api and loads SAM 3.)"""

from __future__ import annotations

import shlex
import sys

import pytest

from tests.harness.waiting import wait_until
from tests.standin.harness import STANDIN_SCRIPT

STANDIN_CMD = f"{shlex.quote(sys.executable)} {shlex.quote(str(STANDIN_SCRIPT))}"


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({}, "the model backend is not installed"),
        ({"GEOLIBRE_ML_SAMGEO_CMD": STANDIN_CMD}, "not installed by geolibre-ml"),
    ],
)
def test_prewarm_leaves_a_backend_it_did_not_install_alone(sidecar_factory, env, why):
    sidecar = sidecar_factory(env={"GEOLIBRE_ML_PREWARM": "1", **env})
    wait_until(lambda: "prewarm skipped" in sidecar.stderr(), timeout_s=15, what="prewarm")
    assert why in sidecar.stderr()
    assert sidecar.status()["state"] == "stopped"
    assert not sidecar.descendants()
