"""Waiting for a starting backend: a deadline that follows progress, not a clock.

samgeo-api takes 12 s or more to start on a good day, far longer on a slow
disk; a fixed timeout either kills slow good starts or waits forever on a hang.
So the wait goes on while the child uses CPU or writes output, gives up after
``stall_s`` without either, and never exceeds ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from geolibre_env.backend.exit_causes import ExitCause, ExitReport, classify_exit, report
from geolibre_env.backend.log import log_signature, read_log_tail
from geolibre_env.backend.process import GuardedProcess

# Below this much CPU time between two looks, the child is not doing anything.
PROGRESS_CPU_S = 0.02
TAIL_LINES = 40


class StartupFailed(Exception):
    """The backend exited, stalled or ran out of time while starting."""

    def __init__(self, exit_report: ExitReport) -> None:
        super().__init__(exit_report.summary)
        self.report = exit_report


@dataclass(frozen=True)
class StartupLimits:
    stall_s: float
    timeout_s: float
    interval_s: float


async def wait_until_healthy(
    proc: GuardedProcess,
    probe: Callable[[], Awaitable[bool]],
    *,
    log_path: Path,
    log_offset: int,
    limits: StartupLimits,
    stopping: Callable[[], bool],
) -> None:
    """Return once ``probe()`` succeeds; raise :class:`StartupFailed` with the cause."""
    started = last_progress = time.monotonic()
    last_cpu, last_sig = proc.cpu_seconds(), log_signature(log_path)
    while True:
        if proc.returncode is not None:
            tail = read_log_tail(log_path, since=log_offset, lines=TAIL_LINES)
            raise StartupFailed(
                classify_exit(proc.returncode, tail, stopped_by_us=stopping(), during_start=True)
            )
        if await probe():
            return
        now = time.monotonic()
        cpu, sig = proc.cpu_seconds(), log_signature(log_path)
        if cpu - last_cpu >= PROGRESS_CPU_S or sig != last_sig:
            last_cpu, last_sig, last_progress = cpu, sig, now
        failure: tuple[ExitCause, str] | None = None
        if now - last_progress > limits.stall_s:
            failure = (
                ExitCause.START_STALLED,
                f"samgeo-api made no progress for {limits.stall_s:g} s while starting "
                "(no CPU use, no output) and was stopped.",
            )
        elif now - started > limits.timeout_s:
            failure = (
                ExitCause.START_TIMEOUT,
                f"samgeo-api was still not ready after {limits.timeout_s:g} s and was stopped.",
            )
        if failure is not None:
            tail = read_log_tail(log_path, since=log_offset, lines=TAIL_LINES)
            raise StartupFailed(report(failure[0], failure[1], tail))
        await asyncio.sleep(limits.interval_s)
