"""Process mechanics for the backend: start under the guard, observe, stop as a tree.

Only the *how*: when to start, restart or give up is the supervisor's business.
The interface is Popen-shaped (``pid``, ``returncode``, ``wait``,
``send_signal``, ``stop``), as in jupyter_client's provisioners.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import psutil

from geolibre_env.process_tree import same_start

GRACEFUL_STOP_TIMEOUT_S = 10.0
KILL_TIMEOUT_S = 5.0
ADOPTED_POLL_S = 0.25
WAIT_POLL_S = 0.02

StopOutcome = Literal["not-running", "exited", "terminated", "killed"]


@dataclass(frozen=True)
class ProcessIdentity:
    """Enough to tell "our process" from another that got the same pid later."""

    pid: int
    create_time: float
    cmdline: tuple[str, ...]

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                return cls(pid, proc.create_time(), tuple(proc.cmdline()))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    def is_alive(self) -> bool:
        """True only if ``pid`` is still the very process we recorded."""
        current = ProcessIdentity.of(self.pid)
        return (
            current is not None
            and same_start(current.create_time, self.create_time)
            and current.cmdline == self.cmdline
        )

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["cmdline"] = list(self.cmdline)
        return data


def guard_command(
    argv: Sequence[str], *, log_path: Path, parent_pid: int, stdio: bool = False
) -> list[str]:
    """The command line that runs ``argv`` under :mod:`geolibre_env.backend.process_guard`."""
    return [
        sys.executable,
        "-m",
        "geolibre_env.backend.process_guard",
        "--parent-pid",
        str(parent_pid),
        "--log",
        str(log_path),
        *(["--stdio"] if stdio else []),
        "--",
        *argv,
    ]


class GuardedProcess:
    """A backend running under the guard, in its own process group."""

    def __init__(
        self,
        identity: ProcessIdentity,
        *,
        child: asyncio.subprocess.Process | None = None,
    ) -> None:
        self.identity = identity
        self._child = child  # None for a process adopted from an earlier sidecar
        self._returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.identity.pid

    @property
    def adopted(self) -> bool:
        return self._child is None

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
        stdio: bool = False,
    ) -> GuardedProcess:
        """Start ``argv`` under the guard. Must run on the event loop's thread.

        ``stdio``: ``argv`` talks over pipes (:attr:`stdin`, :attr:`stdout`); its
        stderr goes to the log.

        The loop thread lives as long as the sidecar, which matters on Linux:
        the kernel's parent-death signal follows the thread that forked.
        """
        log_path.parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, object] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True  # own group: signalled as one
        pipe = subprocess.PIPE if stdio else subprocess.DEVNULL
        child = await asyncio.create_subprocess_exec(
            *guard_command(argv, log_path=log_path, parent_pid=os.getpid(), stdio=stdio),
            env=dict(env),
            cwd=cwd,
            stdin=pipe,
            stdout=pipe,
            stderr=subprocess.DEVNULL,
            **kwargs,
        )
        if sys.platform == "win32":
            _windows_job.assign(child.pid)
        identity = ProcessIdentity.of(child.pid) or ProcessIdentity(
            child.pid, time.time(), tuple(guard_command(argv, log_path=log_path, parent_pid=0))
        )
        return cls(identity, child=child)

    @classmethod
    def adopt(cls, identity: ProcessIdentity) -> GuardedProcess | None:
        """Take charge of a process an earlier sidecar started, if it is still that process."""
        return cls(identity) if identity.is_alive() else None

    @property
    def stdin(self) -> asyncio.StreamWriter | None:
        return self._child.stdin if self._child is not None else None

    @property
    def stdout(self) -> asyncio.StreamReader | None:
        return self._child.stdout if self._child is not None else None

    @property
    def returncode(self) -> int | None:
        if self._child is not None:
            return self._child.returncode
        return self._returncode

    async def wait(self) -> int | None:
        """Wait for exit. An adopted process's exit code cannot be known: ``None``."""
        if self._child is not None:
            return await self._child.wait()
        while self.identity.is_alive():
            await asyncio.sleep(ADOPTED_POLL_S)
        return None

    def tree(self) -> list[psutil.Process]:
        """The guard and every descendant, if still running."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return []

    def cpu_seconds(self) -> float:
        """CPU time used by the whole tree so far: start-up progress shows up here."""
        total = 0.0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def send_signal(self, signum: int) -> None:
        """Signal the process group (POSIX), or the guard alone (Windows)."""
        if sys.platform == "win32":
            with contextlib.suppress(psutil.Error):
                psutil.Process(self.pid).send_signal(signum)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    async def stop(
        self,
        *,
        graceful_timeout_s: float = GRACEFUL_STOP_TIMEOUT_S,
        kill_timeout_s: float = KILL_TIMEOUT_S,
    ) -> StopOutcome:
        """Escalate: polite signal to the tree, wait, SIGKILL what is left, wait."""
        procs = self.tree()
        if not procs:
            await self._reap()
            return "not-running"
        polite = signal.SIGTERM if sys.platform != "win32" else signal.CTRL_BREAK_EVENT
        self.send_signal(polite)
        for proc in procs[1:]:  # descendants that left our group still get asked
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        alive = await _wait_procs(procs, graceful_timeout_s)
        if not alive:
            await self._reap()
            return "terminated"
        if sys.platform != "win32":
            self.send_signal(signal.SIGKILL)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        await _wait_procs(alive, kill_timeout_s)
        await self._reap()
        return "killed"

    async def _reap(self) -> None:
        if self._child is not None:
            with contextlib.suppress(ProcessLookupError):
                await asyncio.wait_for(self._child.wait(), timeout=KILL_TIMEOUT_S)


def _running(proc: psutil.Process) -> bool:
    """Still doing something: a zombie (exited, not yet reaped by its parent) is not."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def _wait_procs(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """The processes still running after ``timeout_s`` (checked every few ms)."""
    deadline = time.monotonic() + timeout_s
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        await asyncio.sleep(WAIT_POLL_S)
        alive = [p for p in alive if _running(p)]
    return alive


class _WindowsJob:
    """A job object that kills its processes when the sidecar's handle closes.

    Windows has no process groups to signal and no parent-death signal; a job
    with KILL_ON_JOB_CLOSE gives the same guarantee (no orphans).
    """

    def __init__(self) -> None:
        self._handle: int | None = None

    def assign(self, pid: int) -> None:  # pragma: no cover - exercised on Windows only
        import ctypes
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        if self._handle is None:
            handle = kernel32.CreateJobObjectW(None, None)

            class _Limits(ctypes.Structure):
                _fields_ = [
                    ("PerProcessUserTimeLimit", ctypes.c_int64),
                    ("PerJobUserTimeLimit", ctypes.c_int64),
                    ("LimitFlags", wintypes.DWORD),
                    ("MinimumWorkingSetSize", ctypes.c_size_t),
                    ("MaximumWorkingSetSize", ctypes.c_size_t),
                    ("ActiveProcessLimit", wintypes.DWORD),
                    ("Affinity", ctypes.c_size_t),
                    ("PriorityClass", wintypes.DWORD),
                    ("SchedulingClass", wintypes.DWORD),
                ]

            class _IoCounters(ctypes.Structure):
                _fields_ = [(name, ctypes.c_uint64) for name in (
                    "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
                    "ReadTransferCount", "WriteTransferCount", "OtherTransferCount",
                )]  # fmt: skip

            class _ExtendedLimits(ctypes.Structure):
                _fields_ = [
                    ("BasicLimitInformation", _Limits),
                    ("IoInfo", _IoCounters),
                    ("ProcessMemoryLimit", ctypes.c_size_t),
                    ("JobMemoryLimit", ctypes.c_size_t),
                    ("PeakProcessMemoryUsed", ctypes.c_size_t),
                    ("PeakJobMemoryUsed", ctypes.c_size_t),
                ]

            limits = _ExtendedLimits()
            limits.BasicLimitInformation.LimitFlags = 0x2000  # KILL_ON_JOB_CLOSE
            kernel32.SetInformationJobObject(handle, 9, ctypes.byref(limits), ctypes.sizeof(limits))
            self._handle = handle
        process = kernel32.OpenProcess(0x0100 | 0x0001, False, pid)  # SET_QUOTA | TERMINATE
        if process:
            kernel32.AssignProcessToJobObject(self._handle, process)
            kernel32.CloseHandle(process)


_windows_job = _WindowsJob()
