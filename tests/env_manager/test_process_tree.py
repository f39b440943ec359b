"""process_tree.signal_group: one signal reaches the whole group, never a reaped pid."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass

import psutil
import pytest
from geolibre_env.process_tree import signal_group

from tests.harness.processes import gone, wait_gone
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX")

# A group leader that starts a grandchild and waits: the grandchild only dies
# if the signal reaches the group, not just the leader.
_LEADER = "sleep 60 & echo $!; wait"


def _start_group() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        ["sh", "-c", _LEADER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    proc.stdout.close()
    wait_until(lambda: not gone(grandchild), timeout_s=5, what="the grandchild to run")
    return proc, grandchild


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_signal_reaches_the_leader_and_its_children(signum: int) -> None:
    proc, grandchild = _start_group()
    try:
        signal_group(proc, signum)
        proc.wait(timeout=10)
        wait_gone([grandchild], timeout_s=10, what="the grandchild to die with its group")
        assert proc.returncode == -signum
    finally:
        if not gone(grandchild):
            psutil.Process(grandchild).kill()


@dataclass
class _Reaped:
    """A child whose exit was already collected, but whose pid now names a live group."""

    pid: int
    returncode: int | None = 0

    def terminate(self) -> None:
        raise AssertionError("a reaped child must not be terminated")

    def kill(self) -> None:
        raise AssertionError("a reaped child must not be killed")


def test_a_reaped_child_is_never_signalled() -> None:
    # The pid (and group) of a reaped child may belong to another program: here
    # a live group stands in for that program, and it must survive.
    other, grandchild = _start_group()
    try:
        signal_group(_Reaped(pid=other.pid), signal.SIGKILL)
        assert other.poll() is None
        assert not gone(grandchild)
    finally:
        signal_group(other, signal.SIGKILL)
        other.wait(timeout=10)
        wait_gone([grandchild], timeout_s=10)


def test_a_group_already_gone_is_not_an_error() -> None:
    proc, grandchild = _start_group()
    signal_group(proc, signal.SIGKILL)
    proc.wait(timeout=10)
    wait_gone([grandchild], timeout_s=10)
    # Not yet seen as exited by its owner (returncode None) but the group is gone:
    # the caller raced the exit, which is no error.
    signal_group(_Reaped(pid=proc.pid, returncode=None), signal.SIGTERM)
