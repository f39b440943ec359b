"""Fixtures for real installs: a wheelhouse of stand-in packages and a CLI runner
that installs from it with real uv, offline (UV_OFFLINE, UV_FIND_LINKS)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import offline_install_env
from tests.harness.sidecar import base_env


@dataclass
class Installer:
    home: Path
    env: dict[str, str]

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "geolibre_env", *args]

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        timeout_s: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            env={**self.env, **(env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )

    def spawn(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def install_json(self, *args: str, **kwargs: object) -> dict:
        proc = self.run("install", "--json", *args, **kwargs)  # type: ignore[arg-type]
        assert proc.returncode in (0, 3), proc.stderr
        return json.loads(proc.stdout)


@pytest.fixture
def installer(ml_home: Path, wheelhouse: Path, warm_uv_cache: Path, marker: str) -> Installer:
    return Installer(
        ml_home, base_env(ml_home, marker, offline_install_env(wheelhouse, warm_uv_cache))
    )
