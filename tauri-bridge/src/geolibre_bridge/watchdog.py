"""Noticing that the desktop app went away: EOF on our stdin (its pid is watched by
:class:`geolibre_env.process_tree.ParentWatch`)."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import threading
from collections.abc import Callable


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
