"""Supervising a launched samgeo-api (the stand-in) as real processes with real
signals: start-up, crashes, restarts, leftovers, idle unload, and no orphans."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from geolibre_env.backend.process import ProcessIdentity, guard_command
from geolibre_env.backend.record import BackendRecord, write_record
from geolibre_env.paths import Paths

from tests.harness.processes import assert_nothing_left as assert_leftovers_gone
from tests.harness.processes import gone, wait_gone
from tests.harness.sidecar import base_env, kill_app, start_app_with_sidecar
from tests.harness.waiting import wait_until
from tests.standin.harness import STANDIN_SCRIPT, free_port, make_png

PNG = make_png(32, 32)
STANDIN_CMD = f"{shlex.quote(sys.executable)} {shlex.quote(str(STANDIN_SCRIPT))}"
FAST = {
    "GEOLIBRE_ML_SAMGEO_CMD": STANDIN_CMD,
    "GEOLIBRE_ML_RESTART_BACKOFF_S": "0.1",
    "GEOLIBRE_ML_STOP_TIMEOUT_S": "3",
}


def segment(client: httpx.Client, prompt: str = "trees", **fields: str) -> httpx.Response:
    return client.post(
        "/ml/segment/text",
        files={"file": ("a.png", PNG, "image/png")},
        data={"prompt": prompt, **fields},
    )


def backend_pids(sidecar) -> list[int]:
    return sidecar.descendants()


def assert_nothing_left(sidecar, marker: str) -> None:
    """Stop the sidecar; nothing it started may survive it."""
    sidecar.terminate()
    assert_leftovers_gone(marker, timeout_s=10)


@pytest.fixture
def managed(sidecar_factory):
    def start(**env: str):
        return sidecar_factory(env={**FAST, **env})

    return start


def test_concurrent_first_requests_start_exactly_one_backend(managed, marker):
    sidecar = managed()
    results: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        with sidecar.client() as client:
            status = segment(client).status_code
        with lock:
            results.append(status)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [200] * 4
    guards = [
        p
        for p in psutil.Process(sidecar.pid).children()
        if "process_guard" in " ".join(p.cmdline())
    ]
    assert len(guards) == 1
    status = sidecar.status()
    assert status["available"] and status["state"] == "ready"
    assert status["backend"]["pid"] == guards[0].pid
    assert status["version"] == "1.4.2"
    assert_nothing_left(sidecar, marker)


def test_start_and_stop_buttons(managed, marker):
    sidecar = managed()
    with sidecar.client() as client:
        started = client.post("/ml/backend/start?wait=1").json()
        assert started["state"] == "ready" and started["available"] is True
        pid = started["backend"]["pid"]
        stopped = client.post("/ml/backend/stop").json()
    assert stopped["state"] == "stopped" and stopped["available"] is False
    wait_gone([pid], timeout_s=5)
    assert_nothing_left(sidecar, marker)


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


def test_an_idle_backend_is_unloaded_and_comes_back_on_demand(managed, marker):
    sidecar = managed(GEOLIBRE_ML_IDLE_UNLOAD_S="1")
    with sidecar.client() as client:
        assert segment(client).status_code == 200
        pid = client.get("/ml/status").json()["backend"]["pid"]
        status = wait_until(
            lambda: (s := client.get("/ml/status").json())["state"] == "stopped" and s,
            timeout_s=10,
            what="the idle unload",
        )
        assert "idle" in status["message"]
        wait_gone([pid], timeout_s=5)
        assert segment(client).status_code == 200, "the next request starts it again"
    assert_nothing_left(sidecar, marker)


def test_new_model_variants_past_the_bound_clear_the_model_cache(managed, marker):
    sidecar = managed(GEOLIBRE_ML_MAX_MODEL_VARIANTS="2")
    with sidecar.client() as client:
        for threshold in ("0.3", "0.4", "0.3", "0.5"):
            assert segment(client, confidence_threshold=threshold).status_code == 200
        status = client.get("/ml/status").json()
        port = status["backend"]["port"]
    loaded = httpx.get(f"http://127.0.0.1:{port}/models", trust_env=False).json()["loaded"]
    assert status["backend"]["model_variants"]["clears"] == 1
    assert len(loaded) == 1, "the cache held 2 variants, was cleared, then loaded the 3rd"
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


@pytest.mark.parametrize("how", ["post", "sigterm"])
def test_shutdown_during_a_segmentation_answers_503_and_exits_promptly(managed, marker, how):
    sidecar = managed()
    with sidecar.client() as client:
        client.post("/ml/backend/start?wait=1").raise_for_status()
    answers: list[httpx.Response | BaseException] = []

    def busy() -> None:
        with sidecar.client() as other:
            try:
                answers.append(segment(other, "standin:sleep=30"))
            except httpx.HTTPError as exc:
                answers.append(exc)

    worker = threading.Thread(target=busy)
    worker.start()
    with sidecar.client() as client:
        wait_until(lambda: client.get("/ml/status").json()["state"] == "busy", timeout_s=10)
        started = time.monotonic()
        if how == "post":
            assert client.post("/shutdown").status_code == 202
        else:
            sidecar.proc.send_signal(signal.SIGTERM)
    worker.join(timeout=10)
    answered_after = time.monotonic() - started
    # uvicorn re-raises a signal it handled once it has shut down (as test_launcher allows).
    assert sidecar.proc.wait(timeout=10) in (0, -signal.SIGTERM)
    exited_after = time.monotonic() - started
    [answer] = answers
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code == 503
    assert "shutting down" in answer.json()["detail"]
    assert answered_after < 2.0
    assert exited_after < 4.0
    assert "Traceback" not in sidecar.stderr()
    assert_leftovers_gone(marker, timeout_s=10)
