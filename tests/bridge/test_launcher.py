"""The launcher contract (DESIGN contract 1), on a real process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.harness.processes import wait_gone
from tests.harness.sidecar import base_env, kill_app, launcher_path, start_app_with_sidecar


def test_ready_line_is_the_only_stdout_and_names_a_working_loopback_url(sidecar_factory):
    sidecar = sidecar_factory()
    ready = sidecar.ready
    assert ready["event"] == "ready"
    assert set(ready) == {"event", "url", "port", "token", "pid", "version"}
    assert ready["url"] == f"http://127.0.0.1:{ready['port']}"
    assert ready["pid"] == sidecar.proc.pid
    assert re.fullmatch(r"[0-9a-f]{32}", ready["token"]), "a fresh 128-bit token"
    assert httpx.get(f"{ready['url']}/health", trust_env=False).json()["status"] == "ok"
    # uvicorn re-raises the signal after its graceful shutdown: -SIGTERM is a clean exit.
    assert sidecar.terminate() in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in sidecar.stderr()
    assert sidecar.stdout_rest() == b"", "nothing but the ready line may go to stdout"


def test_token_comes_from_the_environment_when_the_app_sets_one(sidecar_factory):
    sidecar = sidecar_factory(env={"GEOLIBRE_SIDECAR_TOKEN": "app-chosen-token-1234"})
    assert sidecar.token == "app-chosen-token-1234"
    with sidecar.client() as client:
        assert client.get("/ml/status").status_code == 200


def test_each_launch_gets_a_new_token(sidecar_factory, tmp_path):
    # Two at once need two data folders (one sidecar per folder: test_data_lock.py).
    assert sidecar_factory().token != sidecar_factory(home=tmp_path / "second").token


def test_fixed_port_still_works_for_older_app_builds(sidecar_factory):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sidecar = sidecar_factory(args=("--port", str(port)))
    assert sidecar.ready["port"] == port


def test_port_in_use_is_one_clear_line_naming_the_holder(ml_home, marker):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = subprocess.run(
            [launcher_path(), "--port", str(port)],
            env=base_env(ml_home, marker),
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    assert proc.returncode == 1
    assert proc.stdout == b""
    err = proc.stderr.decode()
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert f"pid {os.getpid()}" in err, "names the process holding the port"
    assert "Traceback" not in err


def test_non_loopback_bind_is_refused_without_allow_remote(ml_home, marker):
    proc = subprocess.run(
        [launcher_path(), "--host", "0.0.0.0"],
        env=base_env(ml_home, marker),
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert b"--allow-remote" in proc.stderr
    assert proc.stdout == b""


def test_bad_setting_is_one_line_naming_the_key(ml_home, marker):
    proc = subprocess.run(
        [launcher_path()],
        env=base_env(ml_home, marker, {"GEOLIBRE_ML_MAX_IN_FLIGHT": "lots"}),
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "GEOLIBRE_ML_MAX_IN_FLIGHT='lots'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_exits_cleanly_on_signals(sidecar_factory, signum):
    sidecar = sidecar_factory()
    sidecar.proc.send_signal(signum)
    assert sidecar.proc.wait(timeout=15) in (0, -signum)
    assert "Application shutdown complete" in sidecar.stderr()


def test_exits_on_post_shutdown_and_requires_the_token_for_it(sidecar_factory):
    sidecar = sidecar_factory()
    with sidecar.client(token="wrong") as client:
        assert client.post("/shutdown").status_code == 401
    assert sidecar.proc.poll() is None
    with sidecar.client() as client:
        assert client.post("/shutdown").status_code == 202
    assert sidecar.proc.wait(timeout=15) == 0


def test_exits_when_stdin_reaches_eof(sidecar_factory):
    sidecar = sidecar_factory()
    assert sidecar.proc.stdin is not None
    sidecar.proc.stdin.close()
    assert sidecar.proc.wait(timeout=15) == 0
    assert "stdin closed" in sidecar.stderr()


def test_stdin_from_dev_null_is_not_mistaken_for_a_dead_parent(sidecar_factory):
    sidecar = sidecar_factory(stdin=subprocess.DEVNULL)
    with sidecar.client() as client:
        assert client.get("/ml/status").status_code == 200
    assert sidecar.proc.poll() is None


def test_exits_when_the_parent_pid_dies(sidecar_factory):
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        sidecar = sidecar_factory(args=("--parent-pid", str(parent.pid)), stdin=subprocess.DEVNULL)
        parent.kill()
        parent.wait()
        started = time.monotonic()
        assert sidecar.proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        assert "parent exited" in sidecar.stderr()
    finally:
        parent.kill()


def test_logs_go_to_stderr_and_a_file_without_the_token(sidecar_factory, ml_home):
    sidecar = sidecar_factory()
    with sidecar.client() as client:
        client.get("/ml/status")
        client.post("/shutdown")
    sidecar.proc.wait(timeout=15)
    log_file = ml_home / "logs" / "sidecar.log"
    text = log_file.read_text()
    assert "ready on" in text
    assert sidecar.token not in text
    assert sidecar.token not in sidecar.stderr()


def test_killing_the_parent_with_sigkill_takes_the_sidecar_down(ml_home, marker):
    """The app is SIGKILLed: its sidecar notices (pid watch) and exits within 5 s."""
    app, ready = start_app_with_sidecar(ml_home, marker=marker)
    kill_app(app)
    started = time.monotonic()
    wait_gone([ready["pid"]], timeout_s=10, what="the sidecar to exit after its parent")
    assert time.monotonic() - started < 5
