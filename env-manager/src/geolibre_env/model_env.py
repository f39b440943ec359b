"""The installed model environment as others see it: which one is active, where
its Python and samgeo-api are, and what verification recorded about it.

An environment counts only when ``active.json`` names it *and* its completion
marker exists; the marker is written last, after verification, so a half-built
environment is never reported ready (:mod:`geolibre_env.install.provision` writes both).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geolibre_env.paths import Paths

# A build folder holds the venv and, beside it, our bookkeeping.
COMPLETE_MARKER = "complete.json"
JOURNAL = "journal.json"
VENV_DIR = "venv"


def venv_dir(root: Path) -> Path:
    return root / VENV_DIR


def scripts_dir(root: Path) -> Path:
    return venv_dir(root) / ("Scripts" if sys.platform == "win32" else "bin")


def env_python(root: Path) -> Path:
    return scripts_dir(root) / ("python.exe" if sys.platform == "win32" else "python")


def env_script(root: Path, name: str) -> Path:
    return scripts_dir(root) / (f"{name}.exe" if sys.platform == "win32" else name)


@dataclass(frozen=True)
class ActiveEnvironment:
    """A verified, switched-in model environment."""

    root: Path
    record: dict[str, Any]

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def python(self) -> Path:
        return env_python(self.root)

    @property
    def server(self) -> Path:
        return env_script(self.root, str(self.record.get("server_script", "samgeo-api")))

    @property
    def site_packages(self) -> Path | None:
        value = self.record.get("site_packages")
        return Path(value) if value else None

    @property
    def build(self) -> str | None:
        return self.record.get("build")

    @property
    def verify(self) -> dict[str, Any]:
        return dict(self.record.get("verify") or {})


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write then rename, fsyncing the file: a crash leaves old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def active_environment(paths: Paths) -> ActiveEnvironment | None:
    """The environment in use, or None if none is installed and complete."""
    pointer = read_json(paths.active_pointer)
    if not pointer or not isinstance(pointer.get("env"), str):
        return None
    root = paths.envs_dir / pointer["env"]
    record = read_json(root / COMPLETE_MARKER)
    if record is None or not env_python(root).exists():
        return None
    return ActiveEnvironment(root=root, record=record)


def new_env_name() -> str:
    return time.strftime("env-%Y%m%d-%H%M%S-") + os.urandom(3).hex()
