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
