"""Fixtures shared by every test folder: an isolated home and real sidecars."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from geolibre_env.model_env import active_environment
from geolibre_env.paths import Paths

from tests.harness.processes import with_marker
from tests.harness.sidecar import Sidecar, base_env, start_sidecar
from tests.standin.wheelhouse import build_wheelhouse

CLOSED_HUB = "http://127.0.0.1:9"  # nothing listens: a weights step fails fast, offline


def offline_install_env(wheelhouse: Path, uv_cache: Path) -> dict[str, str]:
    """uv's own settings for an air-gapped install from a wheelhouse (as a site would)."""
    return {
        "UV_OFFLINE": "1",
        "UV_NO_INDEX": "1",
        "UV_FIND_LINKS": str(wheelhouse),
        "UV_CACHE_DIR": str(uv_cache),
        "HF_ENDPOINT": CLOSED_HUB,
        # The stand-in environment has no huggingface_hub: ours (the dev group's) fetches.
        "GEOLIBRE_ML_HUB_PYTHON": sys.executable,
    }


def install_offline(
    home: Path,
    wheelhouse: Path,
    uv_cache: Path,
    marker: str,
    *,
    hub: tuple[str, str] | None = None,
) -> dict:
    """``geolibre-ml install`` for real (uv, verify, switch) from the stand-in wheelhouse,
    as on a computer without an NVIDIA GPU, with the weights from ``hub`` (its URL and a
    token) or none; returns the installed environment's record."""
    env = base_env(home, marker, offline_install_env(wheelhouse, uv_cache))
    env["GEOLIBRE_ML_NVIDIA_SMI"] = "/nonexistent/nvidia-smi"
    args = [sys.executable, "-m", "geolibre_env", "install", "--json", "--no-weights"]
    if hub is not None:
        env["HF_ENDPOINT"] = hub[0]
        args[-1:] = ["--token-stdin"]
    proc = subprocess.run(
        args, env=env, input=hub[1] if hub else "", capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    active = active_environment(Paths.resolve(home))
    assert active is not None, proc.stdout[-3000:]
    return active.record


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in packaged as segment-geospatial 1.4.2, with fake torch/torchvision."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    build_wheelhouse(folder)
    return folder


@pytest.fixture(scope="session")
def warm_uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uv cache for installs from the normal wheelhouse (variants get their own)."""
    return tmp_path_factory.mktemp("uv-cache")


@pytest.fixture
def marker() -> str:
    """A unique tag inherited by every process this test starts (for leak checks)."""
    return f"gltest-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def ml_home(tmp_path: Path) -> Path:
    """GEOLIBRE_ML_HOME for one test, in a folder with a space and non-ASCII letters."""
    home = tmp_path / "Usuário de teste" / "geolibre home"
    home.mkdir(parents=True)
    return home


@pytest.fixture
def sidecar_factory(ml_home: Path, marker: str) -> Iterator[Callable[..., Sidecar]]:
    started: list[Sidecar] = []

    def factory(**kwargs: object) -> Sidecar:
        kwargs.setdefault("marker", marker)
        sidecar = start_sidecar(kwargs.pop("home", ml_home), **kwargs)  # type: ignore[arg-type]
        started.append(sidecar)
        return sidecar

    yield factory
    for sidecar in started:
        with contextlib.suppress(Exception):
            sidecar.close()
    # Nothing a test started may outlive it.
    for proc in with_marker(marker):
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
