"""Issue 3's and 5's figures: install when up to date, re-provisioning from a warm
uv cache (per phase), plain pip against the env manager, and the doctor."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.benchmarks.common import Figure, median, new_marker, temp_home
from tests.conftest import offline_install_env
from tests.harness.sidecar import base_env
from tests.standin.wheelhouse import build_wheelhouse

REQUIREMENTS = ["segment-geospatial[api,samgeo3]==1.4.2", "torch==2.14.1", "torchvision==0.29.1"]


def _cli(env: dict[str, str], *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "geolibre_env", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return time.perf_counter() - started, proc


def _pip_install(wheelhouse: Path) -> float:
    with tempfile.TemporaryDirectory(prefix="pip-bench-") as folder:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", folder], check=True)
        subprocess.run(
            [
                f"{folder}/bin/python",
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--no-index",
                "--find-links",
                str(wheelhouse),
                *REQUIREMENTS,
            ],
            check=True,
        )
        return time.perf_counter() - started


def run(quick: bool) -> list[Figure]:
    figures: list[Figure] = []
    with temp_home("install") as home, tempfile.TemporaryDirectory() as scratch:
        wheelhouse, cache = Path(scratch) / "wheelhouse", Path(scratch) / "uv-cache"
        build_wheelhouse(wheelhouse)
        env = base_env(home, new_marker(), offline_install_env(wheelhouse, cache))
        cold, proc = _cli(env, "install", "--no-weights", "--json")
        assert proc.returncode == 0, proc.stderr
        ups = [_cli(env, "install", "--no-weights")[0] for _ in range(3)]
        up = median(ups)
        figures.append(
            Figure(
                "geolibre-ml install, everything already installed",
                up,
                "s",
                "< 2 s",
                up < 2,
                f"median of 3; first (cold) install {cold:.2f} s",
            )
        )
        warm, proc = _cli(env, "install", "--no-weights", "--force", "--json")
        phases = json.loads(proc.stdout)["timings_s"]
        detail = ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
        figures.append(
            Figure(
                "re-provision the stand-in env from a warm uv cache",
                warm,
                "s",
                "< 10 s",
                warm < 10,
                f"per phase (s): {detail}",
            )
        )
        pip = _pip_install(wheelhouse)
        figures.append(
            Figure(
                "same install by plain pip (venv + pip install)",
                pip,
                "s",
                "",
                None,
                f"env manager: cold {cold:.2f} s, warm {warm:.2f} s, and it "
                "also plans, verifies and switches atomically",
            )
        )
        with_env = median([_cli(env, "doctor", "--json")[0] for _ in range(3)])
        figures.append(
            Figure(
                "geolibre-ml doctor, model environment present",
                with_env,
                "s",
                "< 3 s",
                with_env < 3,
            )
        )
    with temp_home("doctor") as empty:
        env = base_env(empty, new_marker())
        without = median([_cli(env, "doctor", "--json")[0] for _ in range(3)])
        figures.append(
            Figure("geolibre-ml doctor, no model environment", without, "s", "< 1 s", without < 1)
        )
    return figures
