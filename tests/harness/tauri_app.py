"""Build and run the minimal Tauri app (tauri-bridge/app) for its end-to-end tests.

The cargo build folder lives outside the clone (``~/.cache/geolibre-ml-tests/
tauri-target``, or ``GEOLIBRE_TEST_TAURI_TARGET``) so later runs are warm. The
page reports what it shows as JSON lines in a file (``GEOLIBRE_APP_E2E_REPORT``);
:func:`wait_step` waits on those lines with a deadline and fails at once, with the
app's output, when the page reports an error or the app exits.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.node import run_tool, tail

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "tauri-bridge" / "app"
LOCK_STAMP = APP / "node_modules" / ".geolibre-package-lock.sha256"
DEFAULT_TARGET = Path.home() / ".cache" / "geolibre-ml-tests" / "tauri-target"
BINARY_NAME = "geolibre-ml-tauri-app"
# From src-tauri/tauri.conf.json.
IDENTIFIER = "org.geolibre.ml-app-test"
PRODUCT_NAME = "GeoLibre ML app"
NPM_CI_TIMEOUT_S = 300
# A cold build (about 420 crates) on CI's two cores; a warm one takes seconds.
BUILD_TIMEOUT_S = 2400


def target_dir() -> Path:
    return Path(os.environ.get("GEOLIBRE_TEST_TAURI_TARGET") or DEFAULT_TARGET)


def build_app(env: dict[str, str]) -> tuple[Path, float]:
    """``npm ci`` (when the lock changed), ``npm run build``; the .deb and the build's seconds."""
    digest = hashlib.sha256((APP / "package-lock.json").read_bytes()).hexdigest()
    stamp = LOCK_STAMP.read_text().strip() if LOCK_STAMP.exists() else None
    if stamp != digest:
        run_tool(["npm", "ci"], env, NPM_CI_TIMEOUT_S, what="npm ci (tauri-bridge/app)", cwd=APP)
        LOCK_STAMP.write_text(digest + "\n")
    started = time.monotonic()
    build_env = {**env, "CARGO_TARGET_DIR": str(target_dir())}
    run_tool(["npm", "run", "build"], build_env, BUILD_TIMEOUT_S, what="npm run build", cwd=APP)
    debs = sorted((target_dir() / "debug" / "bundle" / "deb").glob("*.deb"), key=os.path.getmtime)
    assert debs, "the build made no .deb"
    return debs[-1], time.monotonic() - started


def install_deb(deb: Path, prefix: Path) -> Path:
    """Unpack the app's .deb into ``prefix`` as dpkg would lay it out, made read-only
    (the install folder of a packaged app); the app's executable."""
    subprocess.run(["dpkg-deb", "-x", str(deb), str(prefix)], check=True, timeout=120)
    for path in [prefix, *prefix.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~0o222)
    return prefix / "usr" / "bin" / BINARY_NAME


@dataclass
class AppRun:
    """One running app: its process, the page's report file and its own output."""

    proc: subprocess.Popen[bytes]
    report: Path
    output: Path

    def steps(self) -> list[dict[str, Any]]:
        if not self.report.exists():
            return []
        lines = self.report.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def output_tail(self) -> str:
        return tail(self.output.read_text(encoding="utf-8", errors="replace"))


def launch(binary: Path, env: dict[str, str], folder: Path, name: str) -> AppRun:
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / f"{name}-report.jsonl"
    output = folder / f"{name}-output.log"
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [str(binary)],
            env={**env, "GEOLIBRE_APP_E2E_REPORT": str(report)},
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return AppRun(proc, report, output)


def wait_step(run: AppRun, step: str, *, timeout_s: float) -> dict[str, Any]:
    """The page's report of ``step``; fails on its error report, the app's exit, or the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        steps = run.steps()
        for reported in steps:
            if reported["step"] == step:
                return reported
            if reported["step"] == "error":
                pytest.fail(f"the page reported {reported}\n{run.output_tail()}", pytrace=False)
        if run.proc.poll() is not None:
            pytest.fail(
                f"the app exited ({run.proc.returncode}) before {step!r}; steps {steps}\n"
                f"{run.output_tail()}",
                pytrace=False,
            )
        if time.monotonic() > deadline:
            pytest.fail(
                f"no {step!r} within {timeout_s:g} s; steps {steps}\n{run.output_tail()}",
                pytrace=False,
            )
        time.sleep(0.1)
