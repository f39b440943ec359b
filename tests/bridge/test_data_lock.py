"""One sidecar per data folder, on real launcher processes: a second one pointed at the
same folder exits at once with one sentence naming the first, and changes nothing on
disk; once the first is gone (even by SIGKILL) a new one starts at once."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.harness.sidecar import base_env, launcher_path


def snapshot(home: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``home`` with its size and modification time (the harness's
    own stderr captures excepted: they are not the sidecar's)."""
    return {
        str(p.relative_to(home)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(home.rglob("*"))
        if p.is_file() and not p.name.startswith("sidecar-stderr-")
    }


def start_second(home: Path, marker: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [launcher_path()],
        env=base_env(home, marker),
        capture_output=True,
        timeout=20,  # refused at once; one that starts anyway runs on, and fails here
        stdin=subprocess.DEVNULL,
    )


def test_a_second_sidecar_on_the_same_data_folder_names_the_first_and_changes_nothing(
    sidecar_factory, ml_home, marker
):
    first = sidecar_factory()
    before = snapshot(ml_home)
    second = start_second(ml_home, marker)
    assert second.returncode == 1
    assert second.stdout == b"", "no ready line: it never served"
    err = second.stderr.decode()
    assert f"pid {first.pid}" in err and first.url in err, err
    assert "already uses the data folder" in err and "GEOLIBRE_ML_HOME" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(ml_home) == before, "the refused sidecar wrote nothing"
    with first.client() as client:
        assert client.get("/ml/status").status_code == 200, "the first serves on"


def test_a_sidecar_killed_with_sigkill_frees_the_folder_for_a_restart_at_once(
    sidecar_factory, ml_home
):
    first = sidecar_factory()
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    # No wait for anything to expire: the kernel dropped the lock with the process.
    second = sidecar_factory()
    assert second.pid != first.pid
    with second.client() as client:
        assert client.get("/ml/status").status_code == 200


def test_another_home_is_another_data_folder(sidecar_factory, tmp_path):
    first = sidecar_factory()
    other = sidecar_factory(home=tmp_path / "other home")
    assert first.pid != other.pid
