"""The TypeScript client (tauri-bridge/client) through npm, as its users build it.

``npm ci`` (only when node_modules is missing or package-lock.json changed),
then ``npm test`` from no build output (it builds first): the client's Node
tests against the real ``geolibre-sidecar`` with the samgeo-api stand-in, and
the demo page in headless Chromium. Every process those tests start carries a
marker in its environment; none may be left when they end.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness.sidecar import launcher_path
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.node

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "tauri-bridge" / "client"
STANDIN = ROOT / "tests" / "standin" / "samgeo_standin.py"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
LOCK_STAMP = CLIENT / "node_modules" / ".geolibre-package-lock.sha256"
MARKER_VAR = "GLTEST_MARKER"
NPM_CI_TIMEOUT_S = 300
BUILD_TIMEOUT_S = 180
NODE_TESTS_TIMEOUT_S = 300
LEFTOVER_TIMEOUT_S = 10
OUTPUT_TAIL_CHARS = 20_000
MIN_NODE_MAJOR = 20
# The client's own tests, at least (a run that silently ran fewer is a failure).
MIN_NODE_TESTS = 30


def _tail(text: str) -> str:
    return text if len(text) <= OUTPUT_TAIL_CHARS else "…" + text[-OUTPUT_TAIL_CHARS:]


def _text(data: bytes | str | None) -> str:
    # TimeoutExpired carries bytes even when the run asked for text.
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def _npm(
    args: list[str], env: dict[str, str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    npm = shutil.which("npm")
    assert npm is not None
    command = [npm, *args]
    try:
        proc = subprocess.run(
            command,
            cwd=CLIENT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        output = _text(exc.stdout) + _text(exc.stderr)
        pytest.fail(
            f"`npm {' '.join(args)}` ran over {timeout_s:g} s:\n{_tail(output)}", pytrace=False
        )
    if proc.returncode != 0:
        pytest.fail(
            f"`npm {' '.join(args)}` failed with exit code {proc.returncode}:\n"
            f"{_tail(proc.stdout + proc.stderr)}",
            pytrace=False,
        )
    return proc


def _lock_digest() -> str:
    return hashlib.sha256((CLIENT / "package-lock.json").read_bytes()).hexdigest()


def _leftovers(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARKER_VAR) == marker and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _assert_nothing_left(marker: str) -> None:
    try:
        wait_until(
            lambda: not _leftovers(marker), timeout_s=LEFTOVER_TIMEOUT_S, what="no leftovers"
        )
    except AssertionError:
        left = [f"{p.pid} {' '.join(p.cmdline())}" for p in _leftovers(marker)]
        for proc in _leftovers(marker):
            proc.kill()
        pytest.fail(f"processes outlived the Node tests: {left}", pytrace=False)


# The runner's summary lines: "\u2139 pass 12" (spec reporter) or "# pass 12" (tap).
SUMMARY_LINE = re.compile("^(?:\u2139|#) (tests|pass|fail|skipped|cancelled) (\\d+)$", re.M)


def _counts(output: str) -> dict[str, int]:
    return {name: int(number) for name, number in SUMMARY_LINE.findall(output)}


@pytest.fixture(scope="module")
def node_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Dependencies installed from the lock file, the client built; the tests' environment."""
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
            "GEOLIBRE_TEST_SIDECAR": launcher_path(),
            # The sidecar splits this with shlex: quote the paths.
            "GEOLIBRE_TEST_SAMGEO_CMD": shlex.join([sys.executable, str(STANDIN)]),
            "GEOLIBRE_TEST_ARTIFACTS": str(ARTIFACTS),
            "npm_config_audit": "false",
            "npm_config_fund": "false",
            "npm_config_update_notifier": "false",
            "NO_COLOR": "1",
            "TMPDIR": str(tmp_path_factory.mktemp("node-tmp")),
        }
    )
    digest = _lock_digest()
    stamp = LOCK_STAMP.read_text().strip() if LOCK_STAMP.exists() else None
    if stamp != digest:
        _npm(["ci", "--no-audit", "--no-fund"], env, NPM_CI_TIMEOUT_S)
        LOCK_STAMP.write_text(digest + "\n")
    # `npm ci && npm test` is all a user runs: `npm test` builds by itself (its
    # `pretest`), so start from no build output and let the first test make it.
    shutil.rmtree(CLIENT / "build", ignore_errors=True)
    yield env


def test_client_against_the_real_sidecar(node_env: dict[str, str], marker: str) -> None:
    """`npm test` alone (it builds first); then handshake, token, every /ml route, abort,
    install events, crash and restart, stop."""
    env = {**node_env, MARKER_VAR: marker}
    proc = _npm(["test"], env, NODE_TESTS_TIMEOUT_S)
    output = proc.stdout + proc.stderr
    counts = _counts(output)
    assert counts.get("fail") == 0 and counts.get("cancelled") == 0, _tail(output)
    assert counts.get("skipped") == 0, _tail(output)
    assert counts.get("pass", 0) >= MIN_NODE_TESTS, _tail(output)
    _assert_nothing_left(marker)


def test_demo_page_in_chromium(node_env: dict[str, str], marker: str) -> None:
    """The demo page shows the install, then "ready", and draws a segmentation's polygons."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium package to run the demo page"
        )
    if not (CLIENT / "build" / "test" / "demo").is_dir():  # run alone, without `npm test`
        _npm(["run", "build"], node_env, BUILD_TIMEOUT_S)
    screenshot = ARTIFACTS / "demo-page.png"
    screenshot.unlink(missing_ok=True)
    env = {**node_env, MARKER_VAR: marker, "GEOLIBRE_TEST_CHROMIUM": str(CHROMIUM)}
    proc = _npm(["run", "test:demo"], env, NODE_TESTS_TIMEOUT_S)
    output = proc.stdout + proc.stderr
    counts = _counts(output)
    assert counts.get("pass") == 1 and counts.get("fail") == 0, _tail(output)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "a screenshot is kept"
    _assert_nothing_left(marker)
