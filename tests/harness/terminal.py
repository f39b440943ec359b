"""Run a command on a real pseudo-terminal of a given size and read back what a
person would see: the program believes it writes to a terminal (isatty, the
window size), and the screen is rebuilt from its bytes (carriage returns,
colours, the terminal's own wrap at the last column)."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SGR = re.compile(r"\x1b\[[0-9;]*m")
OTHER_ESCAPES = re.compile(r"\x1b[^m]{0,8}")


@dataclass(frozen=True)
class Screen:
    returncode: int
    lines: list[str]  # the lines as the program wrote them (colours removed)
    rows: list[str]  # the screen rows they make at this width
    columns: int
    raw: str

    @property
    def text(self) -> str:
        return "\n".join(self.rows)


def run_on_terminal(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    columns: int = 80,
    rows: int = 50,
    timeout_s: float = 120.0,
) -> Screen:
    """``argv`` with stdin, stdout and stderr on one pty of ``columns`` x ``rows``."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    try:
        proc = subprocess.Popen(
            argv,
            stdin=follower,
            stdout=follower,
            stderr=follower,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
    finally:
        os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{argv} still ran after {timeout_s:g} s")
            ready, _, _ = select.select([leader], [], [], min(left, 1.0))
            if not ready:
                continue
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    raw = b"".join(chunks).decode("utf-8", errors="replace")
    lines = written_lines(raw)
    return Screen(returncode, lines, screen_rows(lines, columns), columns, raw)


def written_lines(raw: str) -> list[str]:
    """The lines the program wrote: newlines (the pty sends \\r\\n), a bare \\r
    returning to the start of the line, colours removed."""
    lines: list[str] = []
    for line in SGR.sub("", raw).replace("\r\n", "\n").split("\n"):
        shown = ""
        for part in line.split("\r"):
            shown = part + shown[len(part) :]
        lines.append(shown)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def screen_rows(lines: list[str], columns: int) -> list[str]:
    """What the terminal shows: a line longer than the width continues on the next row."""
    rows: list[str] = []
    for line in lines:
        rows.extend(line[i : i + columns] for i in range(0, max(len(line), 1), columns))
    return rows
