"""The TypeScript client (tauri-bridge/client) through npm, as its users build it.

``npm ci`` (only when node_modules is missing or package-lock.json changed),
then ``npm test`` from no build output (it builds first): the client's Node
tests against the real ``geolibre-sidecar`` with the samgeo-api stand-in, and
the demo page in headless Chromium. Every process those tests start carries a
marker in its environment; none may be left when they end.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness.node import CLIENT, ensure_node_modules, node_base_env, npm, tail
from tests.harness.sidecar import launcher_path
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.node

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / "tests" / "standin" / "samgeo_standin.py"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
MARKER_VAR = "GLTEST_MARKER"
BUILD_TIMEOUT_S = 180
NODE_TESTS_TIMEOUT_S = 300
LEFTOVER_TIMEOUT_S = 10
# The client's own tests, at least (a run that silently ran fewer is a failure).
MIN_NODE_TESTS = 30


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
    env = node_base_env()
    env.update(
        {
            "GEOLIBRE_TEST_SIDECAR": launcher_path(),
            # The sidecar splits this with shlex: quote the paths.
            "GEOLIBRE_TEST_SAMGEO_CMD": shlex.join([sys.executable, str(STANDIN)]),
            "GEOLIBRE_TEST_ARTIFACTS": str(ARTIFACTS),
            "TMPDIR": str(tmp_path_factory.mktemp("node-tmp")),
        }
    )
    ensure_node_modules(env)
    # `npm ci && npm test` is all a user runs: `npm test` builds by itself (its
    # `pretest`), so start from no build output and let the first test make it.
    shutil.rmtree(CLIENT / "build", ignore_errors=True)
    yield env


def test_client_against_the_real_sidecar(node_env: dict[str, str], marker: str) -> None:
    """`npm test` alone (it builds first); then handshake, token, every /ml route, abort,
    install events, crash and restart, stop."""
    env = {**node_env, MARKER_VAR: marker}
    proc = npm(["test"], env, NODE_TESTS_TIMEOUT_S)
    output = proc.stdout + proc.stderr
    counts = _counts(output)
    assert counts.get("fail") == 0 and counts.get("cancelled") == 0, tail(output)
    assert counts.get("skipped") == 0, tail(output)
    assert counts.get("pass", 0) >= MIN_NODE_TESTS, tail(output)
    _assert_nothing_left(marker)


def test_demo_page_in_chromium(node_env: dict[str, str], marker: str) -> None:
    """The demo page shows the install, then "ready", and draws a segmentation's polygons."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium package to run the demo page"
        )
    if not (CLIENT / "build" / "test" / "demo").is_dir():  # run alone, without `npm test`
        npm(["run", "build"], node_env, BUILD_TIMEOUT_S)
    screenshot = ARTIFACTS / "demo-page.png"
    screenshot.unlink(missing_ok=True)
    env = {**node_env, MARKER_VAR: marker, "GEOLIBRE_TEST_CHROMIUM": str(CHROMIUM)}
    proc = npm(["run", "test:demo"], env, NODE_TESTS_TIMEOUT_S)
    output = proc.stdout + proc.stderr
    counts = _counts(output)
    assert counts.get("pass") == 1 and counts.get("fail") == 0, tail(output)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "a screenshot is kept"
    _assert_nothing_left(marker)
