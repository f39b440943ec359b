"""Supervising a launched samgeo-api (the stand-in) when it fails: a crash or hang on
start gives the cause and a hint, a slow start that makes progress is waited for, a crash
or kill mid-run is explained and restarted, a crash loop stops, a busy backend is never
declared dead, a taken port is retried, and its output is logged with secrets redacted."""

from __future__ import annotations

import json
import shlex
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.harness.processes import gone
from tests.harness.waiting import wait_until
from tests.sidecar.supervision import assert_nothing_left, backend_pids, segment
from tests.standin.harness import STANDIN_SCRIPT


@pytest.mark.parametrize(
    ("env", "cause", "phrase"),
    [
        ({"STANDIN_FAIL_START": "ModuleNotFoundError: No module named 'sam3'"},
         "missing_module", "geolibre-ml repair"),
        ({"STANDIN_FAIL_START": "RuntimeError: Found no NVIDIA driver on your system."},
         "no_nvidia_driver", "NVIDIA"),
        ({"STANDIN_FAIL_START": "GatedRepoError: 401 Client Error, hf_SecretSecretSecret12345"},
         "weights_gated", "accept the licence"),
    ],
)  # fmt: skip
def test_a_crash_on_start_fails_with_the_cause_and_a_hint(managed, marker, env, cause, phrase):
    sidecar = managed(**env)
    with sidecar.client() as client:
        response = segment(client)
        status = client.get("/ml/status").json()
    assert response.status_code == 503
    assert phrase in response.json()["detail"]
    assert status["state"] == "failed"
    assert status["backend"]["last_exit"]["cause"] == cause
    assert any(phrase in hint for hint in status["hints"])
    assert "hf_SecretSecretSecret12345" not in json.dumps(status)
    assert_nothing_left(sidecar, marker)


def test_a_hang_on_start_is_given_up_when_progress_stalls(managed, marker):
    sidecar = managed(STANDIN_HANG_START="1", GEOLIBRE_ML_START_STALL_S="1.5")
    with sidecar.client() as client:
        started = time.monotonic()
        response = segment(client)
        elapsed = time.monotonic() - started
        status = client.get("/ml/status").json()
    assert response.status_code == 503
    assert "no progress for 1.5 s" in response.json()["detail"]
    assert elapsed < 10
    assert status["backend"]["last_exit"]["cause"] == "start_stalled"
    assert_nothing_left(sidecar, marker)


@pytest.mark.parametrize("progress", ["output", "cpu"])
def test_a_slow_start_that_makes_progress_is_waited_for(managed, marker, progress):
    sidecar = managed(
        STANDIN_START_DELAY_S="3",
        STANDIN_START_PROGRESS=progress,
        GEOLIBRE_ML_START_STALL_S="1.5",
    )
    with sidecar.client() as client:
        assert segment(client).status_code == 200
    assert_nothing_left(sidecar, marker)


def test_a_slow_start_without_progress_stalls(managed, marker):
    sidecar = managed(
        STANDIN_START_DELAY_S="6", STANDIN_START_PROGRESS="none", GEOLIBRE_ML_START_STALL_S="1.5"
    )
    with sidecar.client() as client:
        assert segment(client).status_code == 503
        assert client.get("/ml/status").json()["backend"]["last_exit"]["cause"] == "start_stalled"
    assert_nothing_left(sidecar, marker)


def test_a_crash_mid_request_is_a_502_with_the_cause_then_a_restart(managed, marker):
    sidecar = managed(STANDIN_CRASH_MESSAGE="torch.OutOfMemoryError: CUDA out of memory.")
    with sidecar.client() as client:
        assert segment(client).status_code == 200
        first_pid = client.get("/ml/status").json()["backend"]["pid"]
        response = segment(client, prompt="standin:crash")
        assert response.status_code == 502
        detail = response.json()["detail"]
        assert "crashed" in detail and "GPU ran out of memory" in detail
        status = wait_until(
            lambda: (s := client.get("/ml/status").json())["state"] == "ready" and s,
            timeout_s=15,
            what="the automatic restart",
        )
        assert status["backend"]["restarts"] == 1
        assert status["backend"]["pid"] != first_pid
        assert status["backend"]["last_exit"]["cause"] == "cuda_out_of_memory"
        assert segment(client).status_code == 200
    assert gone(first_pid)
    assert_nothing_left(sidecar, marker)


def test_a_crash_loop_stops_restarting_and_says_why(managed, marker):
    sidecar = managed(
        STANDIN_EXIT_AFTER_S="0.3",
        GEOLIBRE_ML_RESTART_LIMIT="2",
        STANDIN_CRASH_MESSAGE="RuntimeError: boom",
    )
    with sidecar.client() as client:
        client.post("/ml/backend/start?wait=1")
        status = wait_until(
            lambda: (s := client.get("/ml/status").json())["state"] == "failed" and s,
            timeout_s=30,
            what="the crash-loop verdict",
        )
    assert "crash loop" in status["message"]
    assert status["backend"]["restarts"] == 2
    assert any("Start server" in hint for hint in status["hints"])
    assert not [p for p in backend_pids(sidecar)], "no backend left running"
    assert_nothing_left(sidecar, marker)


def test_a_backend_killed_by_the_system_is_explained_and_restarted(managed, marker):
    sidecar = managed()
    with sidecar.client() as client:
        status = client.post("/ml/backend/start?wait=1").json()
        samgeo = psutil.Process(status["backend"]["pid"]).children()[0]
        samgeo.send_signal(signal.SIGKILL)  # as the kernel's OOM killer would
        restarted = wait_until(
            lambda: (
                (s := client.get("/ml/status").json())["backend"]["restarts"] == 1
                and s["state"] == "ready"
                and s
            ),
            timeout_s=15,
        )
    assert restarted["backend"]["last_exit"]["cause"] == "killed_out_of_memory"
    assert "memory" in restarted["backend"]["last_exit"]["hint"]
    assert_nothing_left(sidecar, marker)


def test_a_busy_backend_is_never_declared_dead(managed, marker):
    sidecar = managed(GEOLIBRE_ML_HEALTH_INTERVAL_S="0.2", GEOLIBRE_ML_HANG_RESTART_S="1")
    with sidecar.client() as client:
        pid = client.post("/ml/backend/start?wait=1").json()["backend"]["pid"]

        def busy() -> None:
            with sidecar.client() as other:
                segment(other, "standin:sleep=3")

        worker = threading.Thread(target=busy)
        worker.start()
        wait_until(lambda: client.get("/ml/status").json()["state"] == "busy", timeout_s=10)
        seen = set()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            status = client.get("/ml/status").json()
            seen.add((status["state"], status["available"]))
        worker.join(timeout=30)
        after = client.get("/ml/status").json()
    assert seen == {("busy", True)}
    assert after["backend"]["pid"] == pid and after["backend"]["restarts"] == 0
    assert_nothing_left(sidecar, marker)


def test_a_port_taken_at_start_is_retried_on_another_port(managed, marker, tmp_path):
    flag = tmp_path / "first-run-done"
    wrapper = tmp_path / "samgeo_wrapper.py"
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    wrapper.write_text(
        "import os, sys, pathlib\n"
        f"flag = pathlib.Path({str(flag)!r})\n"
        "args = sys.argv[1:]\n"
        "if not flag.exists():\n"
        "    flag.write_text('x')\n"
        f"    args[args.index('--port') + 1] = '{taken}'\n"
        f"os.execv(sys.executable, [sys.executable, {str(STANDIN_SCRIPT)!r}, *args])\n"
    )
    try:
        sidecar = managed(
            GEOLIBRE_ML_SAMGEO_CMD=f"{shlex.quote(sys.executable)} {shlex.quote(str(wrapper))}"
        )
        with sidecar.client() as client:
            assert segment(client).status_code == 200
            status = client.get("/ml/status").json()
        assert status["backend"]["port"] != taken
        log = (Path(sidecar.stderr_path).parent / "logs" / "samgeo-api.log").read_text()
        assert "address already in use" in log
    finally:
        holder.close()
    assert_nothing_left(sidecar, marker)


def test_backend_output_goes_to_a_log_with_secrets_redacted(managed, marker, ml_home):
    sidecar = managed(
        STANDIN_FAIL_START="ConnectionError: cannot reach hub with hf_PlantedTokenPlantedToken99"
    )
    with sidecar.client() as client:
        segment(client)
        status = client.get("/ml/status").json()
    log_text = (ml_home / "logs" / "samgeo-api.log").read_text()
    assert "ConnectionError" in log_text
    assert "hf_PlantedTokenPlantedToken99" not in log_text
    assert any("ConnectionError" in line for line in status["backend"]["log_tail"])
    assert status["backend"]["last_exit"]["cause"] == "network_offline"
    assert_nothing_left(sidecar, marker)
