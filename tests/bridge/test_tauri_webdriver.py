"""The Tauri app (tauri-bridge/app) driven from outside, as a person would use it:
tauri-driver with WebKitWebDriver under Xvfb, plain W3C WebDriver calls over HTTP.

The page runs no flow of its own here (no GEOLIBRE_APP_E2E_REPORT): the test finds
its elements, clicks Start server and the segmentation button, and reads what the
page shows. The app, started by WebKitWebDriver, inherits tauri-driver's
environment, so the settings (the samgeo-api stand-in, the offline uv) go there.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.bridge.test_tauri_app import (  # noqa: F401 (world is a fixture)
    ARTIFACTS,
    FIRST_READY_TIMEOUT_S,
    OUTLIVE_LIMIT_S,
    STEP_TIMEOUT_S,
    AppWorld,
    _backend,
    _check_sidecar,
    world,
)
from tests.harness.processes import MARKER_VAR, with_marker
from tests.harness.waiting import wait_until
from tests.harness.webdriver import Session, running_tauri_driver, tauri_driver

pytestmark = [
    pytest.mark.tauri,
    pytest.mark.skipif(sys.platform != "linux", reason="WebKitWebDriver is WebKitGTK's"),
]

CONNECTED = re.compile(r"sidecar \S* ?at (http://127\.0\.0\.1:\d+) \(pid (\d+)\)")


def test_app_driven_through_webdriver(world: AppWorld, marker: str) -> None:  # noqa: F811
    """Start server, a segmentation, polygons on the page, a screenshot kept; ending
    the session takes the app, the sidecar and the backend along within 5 s."""
    _, install_s = tauri_driver()
    if install_s:
        print(f"\ncargo install tauri-driver (cold): {install_s:.1f} s")
    env = {**world.env, MARKER_VAR: marker, "TAURI_WEBVIEW_AUTOMATION": "true"}
    log = world.folder / "tauri-driver.log"
    with running_tauri_driver(env, log) as (url, driver_pid):
        started_at = time.monotonic()
        options = {"tauri:options": {"application": str(world.binary)}}
        session = Session(url, {"alwaysMatch": options})
        try:
            sidecar = _drive(world, session, driver_pid, marker)
            print(f"\nsession to polygons on the page: {time.monotonic() - started_at:.1f} s")
            left = _left_by_the_app(driver_pid, marker)
            assert sidecar in left and _backend(marker), f"the check sees them: {left}"
        finally:
            session.delete()
        ended_at = time.monotonic()
        wait_until(
            lambda: not _left_by_the_app(driver_pid, marker),
            timeout_s=OUTLIVE_LIMIT_S,
            what="no app, sidecar or backend left",
        )
        print(f"\nsession deleted to nothing left: {time.monotonic() - ended_at:.2f} s")


def _left_by_the_app(driver_pid: int, marker: str) -> list[psutil.Process]:
    """Marked processes other than tauri-driver and WebKitWebDriver (ours, still running)."""
    drivers = {"tauri-driver", "WebKitWebDriver"}
    return [
        proc
        for proc in with_marker(marker)
        if proc.pid != driver_pid and Path((proc.info["cmdline"] or [""])[0]).name not in drivers
    ]


def _drive(setup: AppWorld, session: Session, driver_pid: int, marker: str) -> psutil.Process:
    connection = session.find("#connection")
    found = wait_until(
        lambda: CONNECTED.search(session.text(connection)),
        timeout_s=FIRST_READY_TIMEOUT_S,
        interval_s=0.5,
        what="the sidecar's connection line",
    )
    app = [p for p in psutil.Process(driver_pid).children(True) if p.name() == setup.binary.name]
    assert len(app) == 1, app
    origin = session.script("return window.location.origin")
    reported = {"url": found.group(1), "pid": int(found.group(2)), "origin": origin}
    # Its own port, the app's token, the app's settings passed on.
    sidecar = _check_sidecar(setup, app[0].pid, reported)

    badge, start = session.find("#status-state"), session.find("#start-backend")
    wait_until(
        lambda: (
            session.attribute(badge, "data-state") not in ("unknown", "", None)
            and session.enabled(start)
        ),
        timeout_s=STEP_TIMEOUT_S,
        interval_s=0.2,
        what="the status with Start server enabled",
    )
    assert session.text(badge) != "ready"
    session.click(start)
    wait_until(
        lambda: session.text(badge) == "ready",
        timeout_s=STEP_TIMEOUT_S,
        interval_s=0.2,
        what="the backend ready",
    )
    assert _backend(marker), "Start server started the stand-in"

    status = session.find("#segment-status")
    session.click(session.find("#segment"))
    wait_until(
        lambda: session.attribute(status, "data-state") in ("done", "error"),
        timeout_s=STEP_TIMEOUT_S,
        interval_s=0.2,
        what="the segmentation's end",
    )
    text = session.text(status)
    assert session.attribute(status, "data-state") == "done", text
    drawn = len(session.find_all("#result polygon"))
    assert drawn > 0 and f"{drawn} polygon(s) drawn" in text, (drawn, text)
    shot = session.screenshot(ARTIFACTS / "tauri-app-webdriver.png")
    assert shot.stat().st_size > 1000
    return sidecar
