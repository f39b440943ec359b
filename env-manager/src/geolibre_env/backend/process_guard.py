"""The guard process between the sidecar and samgeo-api.

``python -m geolibre_env.backend.process_guard --parent-pid P --log FILE -- samgeo-api ...``

It exists so that no backend outlives the sidecar, even one killed with
SIGKILL: the guard asks the kernel for a signal when its parent dies
(``PR_SET_PDEATHSIG`` on Linux) and also polls its parent pid (every other
platform), then kills the backend's whole tree. It also owns the backend's
output: every line goes, redacted, to a size-rotated log file that the
sidecar tails for progress and crash causes, so nothing depends on the
sidecar reading a pipe. With ``--stdio`` (the tile worker, which talks JSON lines)
the child keeps the guard's stdin and stdout and only its stderr goes to the log.

The guard exits the way its child did (same code, or the same signal), so the
supervisor classifies the backend's exit, not the guard's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from geolibre_env.process_tree import ParentWatch, ask_for_parent_death_signal, kill_tree
from geolibre_env.redact import redact

DEFAULT_MAX_LOG_BYTES = 5 * 1024 * 1024
DEFAULT_LOG_BACKUPS = 3
EXIT_CANNOT_START = 127
PUMP_CHUNK_BYTES = 64 * 1024
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


class RotatingLog:
    """Append lines to ``path``; past ``max_bytes`` the file moves to ``path.1`` and so on."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")  # noqa: SIM115 - held for the guard's lifetime

    def write_line(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        self._file.write(redact(text).encode("utf-8"))
        self._file.flush()
        if self._file.tell() >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self._file.close()
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.backups:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = open(self.path, "ab")  # noqa: SIM115

    def close(self) -> None:
        self._file.close()


def _kill_tree(child: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child and everything below it; the parent is gone, so no politeness.
    Runs in a signal handler: nothing waits."""
    with contextlib.suppress(Exception):  # whatever goes wrong, the group kill below runs
        kill_tree(child.pid, wait_s=0)
    with contextlib.suppress(OSError):
        child.kill()
    if hasattr(os, "killpg"):
        with contextlib.suppress(OSError):
            os.killpg(os.getpgid(0), signal.SIGKILL)  # takes the guard too


def _exit_like(returncode: int) -> None:
    if returncode < 0 and hasattr(signal, "SIGKILL"):
        signum = -returncode
        with contextlib.suppress(OSError, ValueError):  # SIGKILL/SIGSTOP have no handler
            signal.signal(signum, signal.SIG_DFL)
        with contextlib.suppress(OSError):
            os.kill(os.getpid(), signum)
    sys.exit(returncode if returncode >= 0 else 128 - returncode)


def _pump(stream: IO[bytes], log: RotatingLog) -> None:
    """Copy output to the log line by line; a bare CR (progress bars) ends a line too."""
    pending = b""
    while chunk := stream.read1(PUMP_CHUNK_BYTES):  # type: ignore[attr-defined]
        *lines, pending = _LINE_BREAK.split(pending + chunk)
        for line in lines:
            if line:
                log.write_line(line + b"\n")
        if len(pending) > PUMP_CHUNK_BYTES:  # a very long line: do not hold it back
            log.write_line(pending + b"\n")
            pending = b""
    if pending:
        log.write_line(pending + b"\n")


def run(parent_pid: int, log: RotatingLog, argv: list[str], *, stdio: bool = False) -> int:
    """Start ``argv``, pump its output into ``log``, and mirror its exit.

    ``stdio``: the child talks over the guard's stdin and stdout; only stderr is logged."""
    parent_died = threading.Event()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    header = f"--- {stamp} geolibre guard {os.getpid()} starting: {' '.join(argv)}\n"
    log.write_line(header.encode())
    try:
        child = subprocess.Popen(
            argv,
            stdin=None if stdio else subprocess.DEVNULL,
            stdout=None if stdio else subprocess.PIPE,
            stderr=subprocess.PIPE if stdio else subprocess.STDOUT,
        )
    except OSError as exc:
        log.write_line(f"geolibre: cannot start {argv[0]}: {exc}\n".encode())
        return EXIT_CANNOT_START
    if stdio:  # the child alone holds the pipes: its death is EOF to the sidecar at once
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.close(devnull)

    def on_parent_death(_signum: int, _frame: object) -> None:
        # Kill first: the group kill ends the guard too. Event.set takes a lock, and a
        # handler blocked on it (held by the code it interrupted, or by the watch
        # thread's wait) left a guard hung for ever beside its dead child.
        _kill_tree(child)
        parent_died.set()

    def on_polite_stop(signum: int, _frame: object) -> None:
        # The supervisor signals the whole group; forward in case only we got it,
        # then keep pumping output until the child has finished shutting down.
        with contextlib.suppress(OSError):
            child.send_signal(signum)

    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, on_parent_death)
    for name in ("SIGTERM", "SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), on_polite_stop)

    def on_parent_gone() -> None:
        _kill_tree(child)
        parent_died.set()

    # Every platform polls; Linux also has the kernel's signal (SIGUSR1 above).
    ParentWatch(parent_pid).watch_in_thread(on_parent_gone, stop=parent_died)

    output = child.stderr if stdio else child.stdout
    assert output is not None
    _pump(output, log)
    returncode = child.wait()
    reason = f"signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    log.write_line(f"--- geolibre guard: backend ended with {reason}\n".encode())
    return returncode


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m geolibre_env.backend.process_guard")
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--max-log-bytes", type=int, default=DEFAULT_MAX_LOG_BYTES)
    parser.add_argument("--log-backups", type=int, default=DEFAULT_LOG_BACKUPS)
    parser.add_argument("--stdio", action="store_true", help="child keeps stdin and stdout")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    ns = parser.parse_args(args)
    command = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    if not command:
        parser.error("no command given after --")
    if hasattr(signal, "SIGUSR1"):
        ask_for_parent_death_signal(signal.SIGUSR1)
    if os.getppid() != ns.parent_pid:  # the parent died before we could watch it
        sys.exit(1)
    log = RotatingLog(ns.log, ns.max_log_bytes, ns.log_backups)
    try:
        returncode = run(ns.parent_pid, log, command, stdio=ns.stdio)
    finally:
        log.close()
    _exit_like(returncode)


if __name__ == "__main__":
    main()
