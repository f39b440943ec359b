"""Tier 2: the real stack on this machine, with nothing faked between the sidecar
and SAM 3's code.

``geolibre-ml install`` builds the pinned spec from the package index into a
test home (uv's cache persists outside the repository, so later runs are warm),
``geolibre-ml verify`` checks it, a tiny randomly initialised SAM 3 stands in
for the gated weights, and the real sidecar launches the real samgeo-api from
that environment. Only the weights are small: samgeo-api, samgeo, transformers,
torch and rasterio are the real ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from geolibre_env.model_env import ActiveEnvironment, active_environment
from geolibre_env.paths import Paths
from geolibre_env.weights import record_weight_files

from tests.harness.processes import wait_gone, with_marker
from tests.harness.sidecar import Sidecar, base_env, start_sidecar
from tests.harness.waiting import wait_until

HERE = Path(__file__).parent
INSTALL_TIMEOUT_S = 60 * 60  # cold: about 7 GB from the package index
START_TIMEOUT_S = 300.0  # samgeo-api's imports take 10-20 s here; more on a loaded machine
STOP_TIMEOUT_S = 30.0
# The request deadline covers the first one, which loads the model.
REQUEST_TIMEOUT_S = 300.0


def uv_cache() -> Path:
    """uv's cache for these tests: outside the repository and every test home, so it
    survives between runs (a cold one downloads about 7 GB)."""
    override = os.environ.get("GEOLIBRE_ML_TEST_UV_CACHE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "geolibre-ml-tests" / "uv"


def cli_path() -> str:
    """The real ``geolibre-ml`` console script of the project's environment."""
    return str(Path(sys.executable).with_name("geolibre-ml"))


@dataclass
class RealStack:
    """A real model environment in a test home, and what building it said."""

    home: Path
    env: dict[str, str]
    marker: str
    install: dict[str, Any]
    verify: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def paths(self) -> Paths:
        return Paths.resolve(self.home)

    @property
    def active(self) -> ActiveEnvironment:
        active = active_environment(self.paths)
        assert active is not None, "install switched in no environment"
        return active

    def model_python(self, script: str, *args: str, timeout_s: float = 300) -> dict[str, Any]:
        """Run one of this folder's scripts with the model environment's Python."""
        proc = subprocess.run(
            [str(self.active.python), str(HERE / script), *args],
            env=self.env, capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])


def _cli(env: dict[str, str], *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cli_path(), *args], env=env, capture_output=True, text=True, timeout=timeout_s
    )


def _kill_marked(marker: str) -> None:
    leftovers = with_marker(marker)
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
    wait_gone([p.pid for p in leftovers], timeout_s=20, what="the real stack's processes to exit")


@pytest.fixture(scope="session")
def real_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealStack]:
    """``geolibre-ml install`` and ``verify`` for real, as a user runs them."""
    home = tmp_path_factory.mktemp("realstack") / "geolibre home"
    marker = f"gltest-real-{uuid.uuid4().hex[:10]}"
    env = base_env(home, marker, {"UV_CACHE_DIR": str(uv_cache())})
    try:
        started = time.monotonic()
        install = _cli(env, "install", "--json", timeout_s=INSTALL_TIMEOUT_S)
        install_s = time.monotonic() - started
        # 3: the environment is built and verified, but the weights step could not
        # finish (the Hub is gated, or unreachable from here); the tiny model stands in.
        assert install.returncode in (0, 3), install.stderr[-3000:]
        started = time.monotonic()
        verify = _cli(env, "verify", "--json", timeout_s=600)
        verify_s = time.monotonic() - started
        assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:]
        yield RealStack(
            home=home,
            env=env,
            marker=marker,
            install=json.loads(install.stdout),
            verify=json.loads(verify.stdout),
            timings={"install_s": install_s, "verify_s": verify_s},
        )
    finally:
        _kill_marked(marker)
        # About 7 GB, mostly hard links into uv's cache: never kept between runs.
        shutil.rmtree(home.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_weights(real_stack: RealStack) -> dict[str, Any]:
    """The tiny SAM 3 in the model environment's HF_HOME, recorded as the weights
    step records what it fetched (the transformers file list is the Hub's listing)."""
    paths = real_stack.paths
    made = real_stack.model_python("tiny_sam3.py", str(paths.hf_home))
    record_weight_files(paths, "transformers", made["repo"], made["commit"], made["files"])
    return made


@dataclass(frozen=True)
class GeoTiff:
    path: Path
    epsg: int
    bounds: tuple[float, float, float, float]  # left, bottom, right, top

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()


@pytest.fixture(scope="session")
def geotiff(real_stack: RealStack, tmp_path_factory: pytest.TempPathFactory) -> GeoTiff:
    """A 256 px RGB GeoTIFF in UTM zone 11N, written by the environment's rasterio."""
    path = tmp_path_factory.mktemp("geotiff") / "scene.tif"
    made = real_stack.model_python("geotiff.py", str(path))
    return GeoTiff(path, made["epsg"], tuple(made["bounds"]))


@pytest.fixture(scope="module")
def real_sidecar(real_stack: RealStack, tiny_weights: dict[str, Any]) -> Iterator[Sidecar]:
    """The real sidecar with only GEOLIBRE_ML_HOME set, its samgeo-api started."""
    sidecar = start_sidecar(real_stack.home, marker=real_stack.marker)
    try:
        with sidecar.client(timeout_s=START_TIMEOUT_S) as client:
            started = client.post(f"/ml/backend/start?wait=1&timeout_s={START_TIMEOUT_S:.0f}")
        assert started.status_code == 200, started.text
        assert started.json()["state"] == "ready", started.json()
        yield sidecar
    finally:
        sidecar.close()
        # Stopping the sidecar stops the samgeo-api it launched: anything left is a leak.
        try:
            wait_until(
                lambda: not with_marker(real_stack.marker),
                timeout_s=STOP_TIMEOUT_S,
                what="the sidecar's samgeo-api to exit with it",
            )
        finally:
            _kill_marked(real_stack.marker)
