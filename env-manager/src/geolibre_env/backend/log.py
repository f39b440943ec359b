"""Reading the backend's log file, which the guard process writes.

The supervisor reads it for two things: whether a starting backend is still
making progress (the file changing), and the last lines of a run that ended,
to classify the cause and show the user.
"""

from __future__ import annotations

import os
from pathlib import Path

LOG_TAIL_BYTES = 16 * 1024
LOG_TAIL_LINES = 20


def read_log_tail(path: Path, *, since: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines written to ``path`` after byte offset ``since``."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = since if 0 <= since <= size else 0  # rotated meanwhile: read what is there
            handle.seek(max(start, size - LOG_TAIL_BYTES))
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def log_signature(path: Path) -> tuple[int, int]:
    """Size and modification time: any change means the backend wrote something."""
    try:
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns
    except OSError:
        return (0, 0)
