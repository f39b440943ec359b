"""What an install or uninstall leaves behind after a kill or a refusal: no
half-built environment, nothing removed by a refused uninstall, and a bundle path
that is not a file named for what it is."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from geolibre_env.model_env import active_environment
from geolibre_env.paths import Paths

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kill_at", ['"phase":"venv"', '"phase":"packages"'])
def test_a_killed_force_reinstall_leaves_no_half_built_folder(installer, kill_at):
    paths = Paths.resolve(installer.home)
    first = installer.install_json("--no-weights")["env"]
    proc = installer.spawn("install", "--no-weights", "--force", "--events")
    assert proc.stdout is not None
    for line in proc.stdout:  # a real point in the build, not a guessed delay
        if kill_at in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert len([p for p in paths.envs_dir.iterdir() if p.is_dir()]) == 2, "a half-built one"
    follow = installer.install_json("--no-weights")
    assert follow["outcome"] == "up-to-date" and follow["env"] == first
    assert [p.name for p in paths.envs_dir.iterdir()] == [first]


def fake_install(paths: Paths) -> dict[str, str]:
    """An installed layout (environment, token, cache) with known contents."""
    env = paths.envs_dir / "env-1"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "samgeo-api").write_bytes(b"x" * 100_000)
    paths.active_pointer.parent.mkdir(parents=True, exist_ok=True)
    paths.active_pointer.write_text(json.dumps({"env": "env-1"}))
    paths.hf_home.mkdir(parents=True, exist_ok=True)
    (paths.hf_home / "token").write_text("hf_SecretSecretSecret")
    paths.uv_cache.mkdir(parents=True, exist_ok=True)
    (paths.uv_cache / "wheel.whl").write_bytes(b"y" * 50_000)
    return {
        str(p): p.read_bytes().hex()
        for p in (env / "bin" / "samgeo-api", paths.hf_home / "token", paths.uv_cache / "wheel.whl")
    }


def unchanged(snapshot: dict[str, str]) -> bool:
    return all(os.path.exists(p) and Path(p).read_bytes().hex() == h for p, h in snapshot.items())


def test_uninstall_with_the_backend_running_removes_nothing(installer):
    paths = Paths.resolve(installer.home)
    snapshot = fake_install(paths)
    # A process running from the environment, as samgeo-api does.
    backend = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(paths.envs_dir / "env-1")],
        env=installer.env,
    )
    try:
        proc = installer.run("uninstall", "--yes", "--weights", "--cache", "--json")
    finally:
        backend.kill()
        backend.wait()
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["freed_bytes"] == 0 and report["removed"] == []
    assert "stop the backend first" in report["kept"][0]
    assert unchanged(snapshot), "the token, the cache and the environment are all still there"
    assert paths.active_pointer.exists()


def test_uninstall_without_a_terminal_or_yes_refuses(installer):
    paths = Paths.resolve(installer.home)
    snapshot = fake_install(paths)
    proc = installer.run("uninstall", "--weights")  # stdin is not a terminal here
    assert proc.returncode == 2
    assert "--yes" in proc.stderr and "nothing was removed" in proc.stderr
    assert unchanged(snapshot)
    done = installer.run("uninstall", "--weights", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["freed_bytes"] >= 100_000
    assert not paths.envs_dir.exists() and not (paths.hf_home / "token").exists()


def test_uninstall_with_nothing_installed_needs_no_confirmation(installer):
    proc = installer.run("uninstall")
    assert proc.returncode == 0
    assert "Nothing to remove" in proc.stdout


def test_a_bundle_path_that_is_not_a_file_says_what_it_is(installer, tmp_path):
    fifo = tmp_path / "pipe.tar"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.tar"
    loop.symlink_to(loop)
    sock_path = tmp_path / "s.tar"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock_path))
    cases = {
        fifo: "named pipe",
        tmp_path: "is a folder",
        loop: "loops back on itself",
        "/dev/null": "is a device",
        sock_path: "is a socket",
        tmp_path / "missing.tar": "does not exist",
    }
    try:
        for path, words in cases.items():
            proc = installer.run("install", "--from", str(path), timeout_s=30)
            assert proc.returncode == 1, (path, proc.stderr)
            assert words in proc.stderr, (path, proc.stderr)
            assert "Traceback" not in proc.stderr
    finally:
        listener.close()
    assert active_environment(Paths.resolve(installer.home)) is None
