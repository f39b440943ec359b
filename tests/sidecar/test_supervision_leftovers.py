"""Supervising a launched samgeo-api (the stand-in) across process deaths, with real
signals: killing the sidecar or the app takes the backend down, and a backend left by an
earlier sidecar is adopted when healthy, stopped when not, and a reused pid is left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from geolibre_env.backend.process import ProcessIdentity, guard_command
from geolibre_env.backend.record import BackendRecord, write_record
from geolibre_env.paths import Paths

from tests.harness.processes import wait_gone
from tests.harness.sidecar import base_env, kill_app, start_app_with_sidecar
from tests.harness.waiting import wait_until
from tests.sidecar.supervision import FAST, assert_nothing_left, backend_pids, segment
from tests.standin.harness import STANDIN_SCRIPT, free_port


def test_killing_the_sidecar_with_sigkill_takes_the_backend_down(managed):
    sidecar = managed()
    with sidecar.client() as client:
        client.post("/ml/backend/start?wait=1")
    tree = backend_pids(sidecar)
    assert len(tree) >= 2, "the guard and samgeo-api"
    sidecar.proc.kill()
    started = time.monotonic()
    wait_gone(tree, timeout_s=10, what="the backend tree after the sidecar's SIGKILL")
    assert time.monotonic() - started < 5


def test_killing_the_app_takes_the_sidecar_and_its_backend_down(ml_home, marker):
    app, ready = start_app_with_sidecar(ml_home, marker=marker, env=FAST)
    response = httpx.post(
        f"{ready['url']}/ml/backend/start?wait=1",
        headers={"X-GeoLibre-Token": ready["token"]},
        timeout=30,
        trust_env=False,
    )
    assert response.json()["state"] == "ready"
    tree = [ready["pid"], *[p.pid for p in psutil.Process(ready["pid"]).children(recursive=True)]]
    kill_app(app)
    started = time.monotonic()
    wait_gone(tree, timeout_s=10, what="the sidecar and its backend after the app's SIGKILL")
    assert time.monotonic() - started < 5


def _start_leftover(home: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A backend "left by an earlier sidecar": this test starts it under the guard
    (watching this test process) and writes the record an earlier sidecar would have."""
    port = free_port()
    argv = [sys.executable, str(STANDIN_SCRIPT), "--host", "127.0.0.1", "--port", str(port)]
    paths = Paths.resolve(home)
    command = guard_command(argv, log_path=paths.backend_log, parent_pid=os.getpid())
    proc = subprocess.Popen(command, env=env, start_new_session=True)
    identity = wait_until(lambda: ProcessIdentity.of(proc.pid), timeout_s=5)
    record = BackendRecord(identity, f"http://127.0.0.1:{port}", port, tuple(argv), time.time(), 1)
    write_record(paths.backend_state, record)
    return proc


def test_a_healthy_leftover_backend_is_adopted(managed, ml_home, marker):
    leftover = _start_leftover(ml_home, base_env(ml_home, marker))
    url = json.loads(Paths.resolve(ml_home).backend_state.read_text())["url"]
    wait_until(lambda: _healthy(url), timeout_s=10, what="the leftover to be healthy")
    sidecar = managed()
    status = sidecar.status()
    assert status["state"] == "ready" and status["backend"]["adopted"] is True
    assert status["backend"]["pid"] == leftover.pid
    with sidecar.client() as client:
        assert segment(client).status_code == 200
    assert_nothing_left(sidecar, marker)
    leftover.wait(timeout=5)


def test_an_unresponsive_leftover_backend_is_stopped(managed, ml_home, marker):
    env = base_env(ml_home, marker, {"STANDIN_HANG_START": "1"})
    leftover = _start_leftover(ml_home, env)
    sidecar = managed()
    assert leftover.wait(timeout=15) is not None, "the sidecar stops the hung leftover"
    status = sidecar.status()
    assert "left by an earlier sidecar" in status["backend"]["last_exit"]["summary"]
    assert_nothing_left(sidecar, marker)


def test_a_reused_pid_that_is_not_ours_is_left_alone(managed, ml_home, marker):
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        actual = ProcessIdentity.of(stranger.pid)
        assert actual is not None
        impostor = ProcessIdentity(stranger.pid, actual.create_time - 100, actual.cmdline)
        paths = Paths.resolve(ml_home)
        write_record(
            paths.backend_state,
            BackendRecord(impostor, "http://127.0.0.1:9", 9, ("samgeo-api",), time.time(), 1),
        )
        sidecar = managed()
        assert sidecar.status()["state"] == "stopped"
        assert stranger.poll() is None, "a process that is not ours must never be touched"
        assert not paths.backend_state.exists()
    finally:
        stranger.kill()
        stranger.wait()
    assert_nothing_left(sidecar, marker)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False
