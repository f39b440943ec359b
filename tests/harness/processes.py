"""Process facts for tests: is a pid gone, which processes carry a marker."""

from __future__ import annotations

import psutil

from tests.harness.waiting import wait_until

# Inherited by every process a test starts; not GEOLIBRE_*, which the harness strips.
MARKER_VAR = "GLTEST_MARKER"


def gone(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids: list[int], *, timeout_s: float, what: str = "processes to exit") -> None:
    wait_until(lambda: all(gone(pid) for pid in pids), timeout_s=timeout_s, what=what)


def with_marker(marker: str) -> list[psutil.Process]:
    """Live processes whose command line or environment mentions ``marker``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(marker in part for part in proc.info["cmdline"] or []):
                found.append(proc)
                continue
            if marker in (proc.environ().get(MARKER_VAR) or ""):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def assert_nothing_left(marker: str, *, timeout_s: float = 10.0) -> None:
    """Fail, naming them, if processes carrying ``marker`` outlive ``timeout_s``."""
    try:
        wait_until(lambda: not with_marker(marker), timeout_s=timeout_s, what="no leftovers")
    except AssertionError:
        left = [f"{p.pid} {' '.join(p.cmdline())}" for p in with_marker(marker)]
        raise AssertionError(f"processes outlived the test: {left}") from None
