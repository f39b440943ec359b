"""Node and npm for the tests that use the TypeScript client or its compiler.

``npm ci`` runs only when node_modules is missing or package-lock.json changed
(a stamp file records the lock's digest); every npm call has a deadline and
fails the test with the tail of its output.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "tauri-bridge" / "client"
LOCK_STAMP = CLIENT / "node_modules" / ".geolibre-package-lock.sha256"
NPM_CI_TIMEOUT_S = 300
OUTPUT_TAIL_CHARS = 20_000
MIN_NODE_MAJOR = 20


def tail(text: str) -> str:
    return text if len(text) <= OUTPUT_TAIL_CHARS else "…" + text[-OUTPUT_TAIL_CHARS:]


def _text(data: bytes | str | None) -> str:
    # TimeoutExpired carries bytes even when the run asked for text.
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def run_tool(
    command: list[str], env: dict[str, str], timeout_s: float, *, what: str, cwd: Path = CLIENT
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in ``cwd`` (the client folder); a failure or overrun fails the test."""
    try:
        proc = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        output = _text(exc.stdout) + _text(exc.stderr)
        pytest.fail(f"`{what}` ran over {timeout_s:g} s:\n{tail(output)}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(
            f"`{what}` failed with exit code {proc.returncode}:\n{tail(proc.stdout + proc.stderr)}",
            pytrace=False,
        )
    return proc


def npm(args: list[str], env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    path = shutil.which("npm")
    assert path is not None
    return run_tool([path, *args], env, timeout_s, what=f"npm {' '.join(args)}")


def node_base_env() -> dict[str, str]:
    """Our environment minus the product's settings, npm quiet; skips without Node 20+."""
    node = shutil.which("node")
    if not node or not shutil.which("npm"):
        pytest.skip("node and npm are not installed: the TypeScript client's tests need Node 20+")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    major = re.match(r"v(\d+)\.", version)
    if not major or int(major.group(1)) < MIN_NODE_MAJOR:
        pytest.fail(f"Node {MIN_NODE_MAJOR}+ is needed, found {version.strip() or 'no version'}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOLIBRE_", "HF_", "UV_"))}
    env.update(
        {
            "npm_config_audit": "false",
            "npm_config_fund": "false",
            "npm_config_update_notifier": "false",
            "NO_COLOR": "1",
        }
    )
    return env


def ensure_node_modules(env: dict[str, str]) -> None:
    """``npm ci`` from the lock file, unless node_modules already matches it."""
    digest = hashlib.sha256((CLIENT / "package-lock.json").read_bytes()).hexdigest()
    stamp = LOCK_STAMP.read_text().strip() if LOCK_STAMP.exists() else None
    if stamp != digest:
        npm(["ci", "--no-audit", "--no-fund"], env, NPM_CI_TIMEOUT_S)
        LOCK_STAMP.write_text(digest + "\n")
