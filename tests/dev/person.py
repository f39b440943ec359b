"""A person at a fresh clone: the machine's own python3 first on PATH, nothing of
ours in the environment, a fresh GEOLIBRE_ML_HOME, and the plan's sources on a
loopback server that answers (tests use no network)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.harness.background_server import BackgroundServer

ROOT = Path(__file__).resolve().parents[2]
SYNC_TIMEOUT_S = 300.0


class _AnyPage(BaseHTTPRequestHandler):
    """A source that answers (a 404 is an answer): the plan's checks find it reachable."""

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextmanager
def answering_sources() -> Iterator[str]:
    """The base URL of a loopback server standing in for the index, torch source and Hub."""
    with BackgroundServer[None](ThreadingHTTPServer(("127.0.0.1", 0), _AnyPage)) as server:
        yield f"http://127.0.0.1:{server.port}"


def plain_env(home: Path) -> dict[str, str]:
    ours = ("GEOLIBRE_", "HF_", "UV_", "VIRTUAL_ENV", "COLUMNS", "LINES")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    system_bin = str(Path(getattr(sys, "_base_executable", sys.executable)).parent)
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin]
    env["PATH"] = os.pathsep.join([system_bin, *path])
    env["GEOLIBRE_ML_HOME"] = str(home)
    return env


def person_env(home: Path, sources: str) -> dict[str, str]:
    return {
        **plain_env(home),
        "UV_DEFAULT_INDEX": f"{sources}/simple",
        "GEOLIBRE_ML_TORCH_INDEX_URL": f"{sources}/whl/{{build}}",
        "HF_ENDPOINT": sources,
    }


def clone(folder: Path) -> Path:
    """The reader's folder: a link to dev.py keeps files the commands write (report.zip)
    out of the real checkout."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dev.py").symlink_to(ROOT / "dev.py")
    return folder


def sync_first(workdir: Path, home: Path) -> None:
    """dev.py's own `uv sync`, once with the plain environment: when the sources changed
    it rebuilds our packages, which needs the real index for their build backend (the
    loopback one would refuse), as it would on a person's first run."""
    subprocess.run(
        ["bash", "-c", "python3 dev.py geolibre-ml --version"],
        cwd=workdir,
        env=plain_env(home),
        check=True,
        capture_output=True,
        timeout=SYNC_TIMEOUT_S,
    )
