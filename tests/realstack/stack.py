"""Building the real stack for tier 2 and the benchmarks: a real model environment
from ``geolibre-ml install``, the tiny SAM 3 in its ``HF_HOME`` and a GeoTIFF.

Only the weights are small: samgeo-api, samgeo, transformers, torch and
rasterio are the real ones, installed from the package index.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from geolibre_env.model_env import ActiveEnvironment, active_environment
from geolibre_env.paths import Paths
from geolibre_env.weights.hub_cache import record_fetched

from tests.harness.processes import wait_gone, with_marker
from tests.harness.sidecar import Sidecar, base_env, start_sidecar
from tests.harness.waiting import wait_until

HERE = Path(__file__).parent
INSTALL_TIMEOUT_S = 60 * 60  # cold: about 7 GB from the package index
TINY_REPO_DIR = ("hub", "models--facebook--sam3")
START_TIMEOUT_S = 300.0  # samgeo-api's imports take 10-20 s here; more on a loaded machine
STOP_TIMEOUT_S = 30.0


def uv_cache() -> Path:
    """uv's cache for these runs: outside the repository and every test home, so it
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
    """A real model environment in a home folder, and what building it said."""

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

    @property
    def tiny_repo(self) -> Path:
        return self.paths.hf_home.joinpath(*TINY_REPO_DIR)

    def model_python(self, script: str, *args: str, timeout_s: float = 300) -> dict[str, Any]:
        """Run one of this folder's scripts with the model environment's Python."""
        proc = subprocess.run(
            [str(self.active.python), str(HERE / script), *args],
            env=self.env, capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])


def cli(env: dict[str, str], *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cli_path(), *args], env=env, capture_output=True, text=True, timeout=timeout_s
    )


def install_real_stack(home: Path, marker: str) -> RealStack:
    """``geolibre-ml install`` then ``verify``, as a user runs them: only the home and
    uv's cache are set."""
    env = base_env(home, marker, {"UV_CACHE_DIR": str(uv_cache())})
    started = time.monotonic()
    install = cli(env, "install", "--json", timeout_s=INSTALL_TIMEOUT_S)
    install_s = time.monotonic() - started
    # 3: the environment is built and verified, but the weights step could not
    # finish (the Hub is gated, or unreachable from here); the tiny model stands in.
    assert install.returncode in (0, 3), install.stderr[-3000:]
    started = time.monotonic()
    verify = cli(env, "verify", "--json", timeout_s=600)
    verify_s = time.monotonic() - started
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:]
    return RealStack(
        home=home,
        env=env,
        marker=marker,
        install=json.loads(install.stdout),
        verify=json.loads(verify.stdout),
        timings={"install_s": install_s, "verify_s": verify_s},
    )


def write_tiny_weights(stack: RealStack) -> dict[str, Any]:
    """The tiny SAM 3 in the model environment's HF_HOME, recorded as the weights step
    records what it fetched (the transformers file list is the Hub's listing)."""
    paths = stack.paths
    started = time.monotonic()
    made = stack.model_python("tiny_sam3.py", str(paths.hf_home))
    stack.timings["tiny_model_s"] = time.monotonic() - started
    record_fetched(paths.hf_home, "transformers", made["repo"], made["commit"], made["files"])
    return made


@dataclass(frozen=True)
class GeoTiff:
    path: Path
    epsg: int
    bounds: tuple[float, float, float, float]  # left, bottom, right, top

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()


def make_geotiff(stack: RealStack, path: Path) -> GeoTiff:
    """A 256 px RGB GeoTIFF in UTM zone 11N, written by the environment's rasterio."""
    made = stack.model_python("geotiff.py", str(path))
    left, bottom, right, top = made["bounds"]
    return GeoTiff(path, made["epsg"], (left, bottom, right, top))


def kill_marked(marker: str) -> None:
    """SIGKILL whatever still carries ``marker`` and wait until it is gone."""
    leftovers = with_marker(marker)
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
    wait_gone([p.pid for p in leftovers], timeout_s=20, what="the real stack's processes to exit")


@contextlib.contextmanager
def running_sidecar(stack: RealStack, env: Mapping[str, str] | None = None) -> Iterator[Sidecar]:
    """The real sidecar on ``stack``'s home, its samgeo-api started; on the way out,
    nothing of either may be left running."""
    sidecar = start_sidecar(stack.home, marker=stack.marker, env=env)
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
                lambda: not with_marker(stack.marker),
                timeout_s=STOP_TIMEOUT_S,
                interval_s=0.2,
                what="the sidecar's samgeo-api to exit with it",
            )
        finally:
            kill_marked(stack.marker)
