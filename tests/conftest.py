"""Fixtures shared by every test folder: an isolated home and real sidecars."""

from __future__ import annotations

import contextlib
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness.processes import with_marker
from tests.harness.sidecar import Sidecar, start_sidecar
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
    }


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
