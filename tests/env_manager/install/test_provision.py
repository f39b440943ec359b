"""Provisioning with real uv from the stand-in wheelhouse: install, resume, kill at
any moment, cancel, concurrency, disk, a missing package, a broken package."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from geolibre_env.install.lock import InstallLock
from geolibre_env.install.staging import processes_using
from geolibre_env.install.verify import run_probe
from geolibre_env.model_env import active_environment
from geolibre_env.paths import Paths

from tests.harness.waiting import wait_until
from tests.standin.wheelhouse import build_wheelhouse

pytestmark = pytest.mark.slow


def paths_of(installer) -> Paths:
    return Paths.resolve(installer.home)


def assert_active_env_works(installer) -> str:
    active = active_environment(paths_of(installer))
    assert active is not None, "an environment is active"
    report = run_probe(active.python, ("samgeo", "samgeo.api"))
    assert report.ok, report.problems
    return active.name


def test_install_builds_verifies_and_switches_in(installer):
    proc = installer.run("install", "--no-weights", "--events")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    phases = [e["phase"] for e in events if e["event"] == "progress"]
    for phase in ("plan", "venv", "torch", "packages", "verify", "switch", "done"):
        assert phase in phases
    result = events[-1]
    assert result["event"] == "result" and result["outcome"] == "installed"
    # Linux without a GPU: the package index's torch (the cu130 build), on the CPU.
    assert result["plan"]["torch_build"]["name"] == "cu130" and not result["plan"]["gpu_ready"]
    assert result["plan"]["torch_label"].endswith("runs on the CPU here")
    assert result["verify"]["torch"] == "2.14.1+standin"
    name = assert_active_env_works(installer)
    assert name == result["env"]
    status = json.loads(installer.run("status", "--json").stdout)
    assert status["installed"] and status["environment"]["name"] == name


def test_a_second_install_is_up_to_date_and_touches_nothing(installer):
    first = installer.install_json("--no-weights")
    again = installer.install_json("--no-weights")
    assert again["outcome"] == "up-to-date"
    assert again["env"] == first["env"]
    assert set(again["timings_s"]) == {"plan"}


def test_the_terminal_gets_a_progress_line_per_phase(installer):
    proc = installer.run("install", "--no-weights")
    assert proc.returncode == 0
    for phase in ("venv", "torch", "packages", "verify"):
        assert f"{phase}:" in proc.stderr
    assert "installed." in proc.stdout


def _kill_points(installer) -> list[float]:
    started = time.monotonic()
    installer.install_json("--no-weights", "--force")
    duration = time.monotonic() - started
    return [duration * (i + 0.5) / 20 for i in range(20)]


def test_sigkill_at_any_moment_never_leaves_a_half_built_environment_active(installer):
    installer.install_json("--no-weights")
    points = _kill_points(installer)
    paths = paths_of(installer)
    for trial, delay in enumerate(points):
        proc = installer.spawn("install", "--no-weights", "--force")
        time.sleep(delay)  # the kill point itself: this is what varies, not a wait for a result
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        # uv dies with the installer: nothing keeps writing into a build folder.
        wait_until(lambda: not processes_using(paths.envs_dir), timeout_s=5, what="uv to exit")
        assert_active_env_works(installer)
        follow = installer.install_json("--no-weights", *(["--force"] if trial % 2 else []))
        assert follow["outcome"] in ("installed", "up-to-date")
        assert_active_env_works(installer)
    builds = [p for p in paths.envs_dir.iterdir() if p.is_dir()]
    assert len(builds) <= 2, "finished builds clean up the ones they replaced"


def test_killed_first_install_then_rerun_resumes_the_same_build(installer):
    paths = paths_of(installer)
    proc = installer.spawn("install", "--no-weights", "--events")
    assert proc.stdout is not None
    for line in proc.stdout:  # wait for a real point: torch is installed
        if '"phase":"packages"' in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert active_environment(paths) is None, "nothing counts as installed yet"
    partial = [p.name for p in paths.envs_dir.iterdir()]
    result = installer.install_json("--no-weights")
    assert result["outcome"] == "installed"
    assert result["env"] in partial, "the interrupted build was resumed, not restarted"
    assert "venv" not in result["timings_s"], "steps already done are not redone"
    assert_active_env_works(installer)


def test_cancel_stops_uv_and_leaves_the_previous_environment(installer):
    before = installer.install_json("--no-weights")["env"]
    proc = installer.spawn("install", "--no-weights", "--force", "--events")
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"phase":"torch"' in line:
            break
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "cancelled" in err.lower()
    assert assert_active_env_works(installer) == before
    assert not processes_using(paths_of(installer).envs_dir)


def test_a_second_concurrent_install_refuses_clearly_or_waits(installer):
    lock = InstallLock(paths_of(installer).install_lock)
    lock.acquire()
    try:
        refused = installer.run("install", "--no-weights")
        assert refused.returncode == 1
        assert f"Another install of the model backend is running (pid {os.getpid()}" in (
            refused.stderr
        )
        assert "--wait" in refused.stderr
        waiting = installer.spawn("install", "--no-weights", "--wait", "--events")
        assert waiting.stdout is not None
        first, second = waiting.stdout.readline(), waiting.stdout.readline()
        assert "waiting" not in first.lower(), "nobody waits before the lock is found busy"
        assert f"(pid {os.getpid()}" in second and "Waiting for it to finish" in second
    finally:
        lock.release()
    _out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert_active_env_works(installer)


def test_not_enough_disk_is_refused_before_anything_is_written(installer, tmp_path):
    spec_dir = tmp_path / "spec"
    shutil.copytree(Path(__file__).resolve().parents[3] / "installers", spec_dir)
    spec_file = spec_dir / "model-env.toml"
    text = spec_file.read_text()
    # Linux without a GPU installs the package index's cu130 wheel: its figures count.
    assert "env_bytes_cuda = 7_099_000_000" in text
    huge = "env_bytes_cuda = 1_000_000_000_000_000"  # a petabyte: more than any test disk
    spec_file.write_text(text.replace("env_bytes_cuda = 7_099_000_000", huge))
    proc = installer.run("install", "--no-weights", env={"GEOLIBRE_ML_SPEC": str(spec_file)})
    assert proc.returncode == 1
    assert "cannot start" in proc.stderr and "GB" in proc.stderr
    assert not paths_of(installer).envs_dir.exists()


def test_a_wheelhouse_missing_a_package_names_it_and_keeps_what_worked(installer, tmp_path):
    before = installer.install_json("--no-weights")["env"]
    partial = tmp_path / "partial-wheelhouse"
    build_wheelhouse(partial, omit=("torch",))
    proc = installer.run(
        "install",
        "--no-weights",
        "--force",
        env={"UV_FIND_LINKS": str(partial), "UV_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode == 1
    assert "The package torch is not available from the wheelhouse." in proc.stderr
    assert assert_active_env_works(installer) == before


def test_a_broken_package_fails_verification_and_is_never_switched_in(installer, tmp_path):
    broken = tmp_path / "broken-wheelhouse"
    build_wheelhouse(broken, broken=("samgeo",))
    proc = installer.run(
        "install",
        "--no-weights",
        env={"UV_FIND_LINKS": str(broken), "UV_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode == 1
    assert "The new environment does not work" in proc.stderr
    assert "samgeo" in proc.stderr
    assert active_environment(paths_of(installer)) is None


def test_repair_rebuilds_a_broken_environment_and_leaves_a_good_one(installer):
    first = installer.install_json("--no-weights")
    ok = installer.run("repair", "--no-weights", "--json")
    assert json.loads(ok.stdout)["outcome"] == "up-to-date"
    active = active_environment(paths_of(installer))
    assert active is not None and active.site_packages is not None
    shutil.rmtree(active.site_packages / "samgeo")  # something deleted part of it
    repaired = json.loads(installer.run("repair", "--no-weights", "--json").stdout)
    assert repaired["outcome"] == "installed"
    assert repaired["env"] != first["env"]
    assert_active_env_works(installer)


def test_uninstall_reports_what_it_freed(installer):
    installer.install_json("--no-weights")
    proc = installer.run("uninstall", "--yes", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["freed_bytes"] > 100_000
    assert not report["kept"]
    assert active_environment(paths_of(installer)) is None
    status = json.loads(installer.run("status", "--json").stdout)
    assert status["installed"] is False
