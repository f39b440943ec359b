"""``python3 dev.py sidecar`` stops with its whole tree when its own pid is signalled."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import psutil
import pytest

from tests.harness.processes import assert_nothing_left, wait_gone, with_marker
from tests.harness.sidecar import start_sidecar
from tests.harness.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
# What a person types: the machine's own Python, not this test's virtual environment.
SYSTEM_PYTHON = getattr(sys, "_base_executable", sys.executable)
EXIT_TIMEOUT_S = 30.0


def dev_py(*args: str) -> list[str]:
    return [SYSTEM_PYTHON, str(ROOT / "dev.py"), *args]


def port_closed(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals to one pid")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_dev_py_stops_the_sidecar_too(
    signum: signal.Signals, ml_home: Path, marker: str
) -> None:
    # A new session: the signal comes from `kill PID`, as a desktop app or script sends
    # it, never from a terminal that would signal the whole group anyway.
    sidecar = start_sidecar(ml_home, marker=marker, cmd=dev_py("sidecar"), timeout_s=120.0)
    try:
        dev_pid = sidecar.proc.pid
        tree = [dev_pid, *(p.pid for p in psutil.Process(dev_pid).children(recursive=True))]
        assert sidecar.pid in tree, "the ready line names a process outside dev.py's tree"
        with sidecar.client() as client:
            assert client.get("/ml/status").status_code == 200

        sidecar.proc.send_signal(signum)

        code = sidecar.proc.wait(timeout=EXIT_TIMEOUT_S)
        wait_gone(tree, timeout_s=EXIT_TIMEOUT_S, what="dev.py's tree to exit")
        wait_until(lambda: port_closed(sidecar.ready["port"]), timeout_s=5.0, what="port closed")
        assert_nothing_left(marker, timeout_s=5.0)
        # The sidecar exits 0 after a graceful shutdown, or with the signal; dev.py says so.
        assert code in (0, -signum, 128 + signum), code
    finally:
        sidecar.close()
        for proc in with_marker(marker):  # whatever a failed run left behind
            proc.kill()
