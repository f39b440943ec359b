"""Tier 3, opt-in (GEOLIBRE_ML_TEST_SAMGEO=1): the REAL model environment.

Provisions the pinned spec (segment-geospatial[api,samgeo3] 1.4.2 with torch;
about 7 GB, minutes) from the real package indexes, starts the real samgeo-api
through the sidecar, and checks that /ml/status tells the truth about this
machine. Needs network access to PyPI and PyTorch's wheel index (or mirrors
set with UV_INDEX_URL / GEOLIBRE_ML_TORCH_INDEX_URL); on a machine with an
NVIDIA GPU it also runs a CUDA smoke test in the model environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from geolibre_env.model_env import active_environment
from geolibre_env.paths import Paths

from tests.harness.sidecar import base_env
from tests.standin.harness import make_png

pytestmark = [
    pytest.mark.samgeo,
    pytest.mark.skipif(
        os.environ.get("GEOLIBRE_ML_TEST_SAMGEO") != "1",
        reason="the real-backend tier is opt-in: set GEOLIBRE_ML_TEST_SAMGEO=1 (7 GB, minutes)",
    ),
]

PASS_THROUGH = ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_CACHE_DIR", "GEOLIBRE_ML_TORCH_INDEX_URL",
                "HF_TOKEN", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "SSL_CERT_FILE")  # fmt: skip


@pytest.fixture(scope="module")
def real_home(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("real-samgeo")
    extra = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
    env = base_env(home, "tier3", extra)
    proc = subprocess.run(
        [sys.executable, "-m", "geolibre_env", "install", "--json"],
        env=env, capture_output=True, text=True, timeout=3 * 3600,
    )  # fmt: skip
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    return home, env, json.loads(proc.stdout)


def test_the_real_environment_verifies(real_home):
    home, _env, result = real_home
    active = active_environment(Paths.resolve(home))
    assert active is not None
    assert active.verify["imports"]["samgeo"], "samgeo imports in the model environment"
    assert result["verify"]["torch"].startswith(result["plan"]["torch_build"]["torch"])


def test_cuda_smoke_test_where_a_gpu_exists(real_home):
    _home, _env, result = real_home
    if not result["plan"]["torch_build"].get("cuda"):
        pytest.skip("no NVIDIA GPU here: the CPU build was installed")
    assert result["verify"]["cuda_available"] is True
    assert result["verify"]["gpu_op"] == "ok"
    assert all(d["arch_covered"] for d in result["verify"]["devices"])


def test_status_explains_truthfully_what_this_machine_can_do(real_home, sidecar_factory):
    home, env, result = real_home
    sidecar = sidecar_factory(home=home, env={k: v for k, v in env.items() if k in PASS_THROUGH})
    with sidecar.client(timeout_s=600) as client:
        started = client.post("/ml/backend/start?wait=1&timeout_s=600").json()
        assert started["state"] == "ready", started
        assert started["version"] == "1.4.2"
        response = client.post(
            "/ml/segment/text",
            files={"file": ("a.png", make_png(64, 64), "image/png")},
            data={"prompt": "trees", "backend": "meta"},
        )
        status = client.get("/ml/status").json()
    hints = " ".join(status["hints"])
    if not result["plan"]["torch_build"].get("cuda"):
        assert response.status_code == 500
        assert response.json()["cause"] == "no_nvidia_driver"
        assert "no usable NVIDIA GPU" in hints
    if result.get("weights_error"):
        assert "SAM 3 weights are not on this computer" in hints
