"""Noticing that the desktop app went away: its pid, and EOF on our stdin."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import threading
from collections.abc import Callable

import psutil

PARENT_POLL_S = 0.5


class ParentWatch:
    """Polls the parent pid; compares start times so a reused pid does not fool it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self._created: float | None = psutil.Process(pid).create_time()
        except psutil.Error:
            self._created = None

    def alive(self) -> bool:
        if self._created is None:
            return False
        try:
            proc = psutil.Process(self.pid)
            return proc.create_time() == self._created and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    async def wait_for_exit(self, on_exit: Callable[[], None]) -> None:
        while self.alive():
            await asyncio.sleep(PARENT_POLL_S)
        on_exit()


def stdin_is_a_pipe() -> bool:
    """EOF means "the parent went away" only for a pipe or socket, not /dev/null or a file."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def watch_stdin_eof(loop: asyncio.AbstractEventLoop, on_eof: Callable[[], None]) -> bool:
    """Read stdin on a thread until EOF, then call ``on_eof`` on the loop. False if not a pipe."""
    if not stdin_is_a_pipe():
        return False

    fd = sys.stdin.fileno()

    def reader() -> None:
        # os.read, not sys.stdin.buffer: a daemon thread blocked inside the
        # buffered reader holds its lock and aborts interpreter shutdown.
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        loop.call_soon_threadsafe(on_eof)

    threading.Thread(target=reader, name="stdin-eof", daemon=True).start()
    return True
