"""Process mechanics written once: the pid identity rule, killing a tree, signalling
a process group, watching the parent, and Linux's parent-death signal.

Used by the uv runner and the installer CLI, the backend's guard and supervisor,
and the launcher in tauri-bridge. Only the *how*; who to stop and when is the
caller's business. psutil and the standard library only: the guard imports this
and stays small for as long as samgeo-api runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Protocol

import psutil

# psutil's create_time is rounded differently across calls on some platforms,
# so "the same start time" means within this much; a reused pid starts later
# than that (a pid is only reused after the old process is gone).
CREATE_TIME_TOLERANCE_S = 0.05
PARENT_POLL_S = 0.5
KILL_WAIT_S = 5.0
_PR_SET_PDEATHSIG = 1


def same_start(a: float, b: float) -> bool:
    """Two create times of one process (see :data:`CREATE_TIME_TOLERANCE_S`)."""
    return abs(a - b) <= CREATE_TIME_TOLERANCE_S


def same_process(pid: int, create_time: float) -> bool:
    """True only if ``pid`` still runs and is the process that started at ``create_time``."""
    try:
        proc = psutil.Process(pid)
        return same_start(proc.create_time(), create_time) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_tree(pid: int, *, wait_s: float = KILL_WAIT_S) -> None:
    """SIGKILL a process and every descendant, then wait up to ``wait_s`` for them.

    No politeness: callers use it once they are past asking (a cancel, a timeout,
    a dead parent). Works on every platform (psutil)."""
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    if wait_s > 0:
        psutil.wait_procs(procs, timeout=wait_s)


class _Child(Protocol):
    """What :func:`signal_group` needs of a child (``subprocess.Popen`` and
    ``asyncio.subprocess.Process`` both fit)."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


def signal_group(child: _Child, signum: int) -> None:
    """Send ``signum`` to the process group ``child`` leads (POSIX; started with
    ``start_new_session=True``), so its own children get it too.

    Windows has no groups: SIGTERM means ``terminate()``, anything else ``kill()``.
    A child already reaped is left alone: its pid, and group, may belong to
    another program by now. A group already gone is not an error."""
    if child.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if sys.platform == "win32":
            child.terminate() if signum == signal.SIGTERM else child.kill()
        else:
            os.killpg(child.pid, signum)


def ask_for_parent_death_signal(signum: int = 9) -> None:  # 9: SIGKILL
    """Linux: have the kernel send ``signum`` when our parent dies (elsewhere: nothing).

    Also safe as a ``preexec_fn``: it runs in the child between fork and exec."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)


class ParentWatch:
    """Whether a process (our parent) still runs, by :func:`same_process`, so a pid
    the system gave to another program after it died does not fool it."""

    def __init__(self, pid: int, *, poll_s: float = PARENT_POLL_S) -> None:
        self.pid = pid
        self.poll_s = poll_s
        try:
            self._created: float | None = psutil.Process(pid).create_time()
        except psutil.Error:
            self._created = None

    def alive(self) -> bool:
        return self._created is not None and same_process(self.pid, self._created)

    async def wait_for_exit(self, on_exit: Callable[[], None]) -> None:
        """Poll on the event loop; call ``on_exit`` once the process is gone."""
        while self.alive():
            await asyncio.sleep(self.poll_s)
        on_exit()

    def watch_in_thread(
        self, on_exit: Callable[[], None], *, stop: threading.Event | None = None
    ) -> threading.Thread:
        """Poll on a daemon thread; call ``on_exit`` once the process is gone, unless
        ``stop`` is set first."""
        stop = stop or threading.Event()

        def watch() -> None:
            while not stop.is_set():
                if not self.alive():
                    on_exit()
                    return
                stop.wait(self.poll_s)

        thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
        thread.start()
        return thread
