"""The samgeo-api supervisor: explicit states, start-up that follows progress,
liveness that respects inference, restarts with backoff, idle unload, and
clean-up of backends an earlier sidecar left behind.

Deciding lives here; :mod:`geolibre_env.backend.process` does, and
:mod:`geolibre_env.backend.restart_policy` holds the restart rules. The tasks
that follow a running backend are in :mod:`geolibre_env.backend.running`; the
states, launch and config types in :mod:`geolibre_env.backend.supervisor_state`
(re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from geolibre_env.backend.exit_causes import ExitCause, ExitReport, classify_exit, report
from geolibre_env.backend.log import LOG_TAIL_LINES, log_signature, read_log_tail
from geolibre_env.backend.process import GuardedProcess
from geolibre_env.backend.readiness import StartupFailed, StartupLimits, wait_until_healthy
from geolibre_env.backend.record import (
    BackendRecord,
    clear_record,
    read_record,
    write_record,
    write_status,
)
from geolibre_env.backend.restart_policy import RestartTracker
from geolibre_env.backend.running import RunningBackend
from geolibre_env.backend.supervisor_state import (
    LOOPBACK,
    BackendFiles,
    BackendState,
    Health,
    LaunchSpec,
    SupervisorConfig,
    free_port,
)
from geolibre_env.errors import BackendError, BackendStartError
from geolibre_env.paths import Paths

log = logging.getLogger("geolibre.supervisor")

ADOPT_PROBE_TIMEOUT_S = 2.0


class _PortTaken(Exception):
    pass


class Supervisor(RunningBackend):
    """Runs one samgeo-api on loopback and keeps it honest."""

    def __init__(
        self,
        resolve_launch: Callable[[], LaunchSpec],
        *,
        paths: Paths,
        http: httpx.AsyncClient,
        config: SupervisorConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = "",
    ) -> None:
        """``clock`` times how long a backend has been ready (the restart policy's
        "stable after" rule and ``uptime_s``); tests pass a fake one to step it.
        ``name`` sets an extra backend apart (its own log, record and status files)."""
        self._resolve_launch = resolve_launch
        self._clock = clock
        self._files = BackendFiles.of(paths, name)
        self._http = http
        self.config = config or SupervisorConfig()
        self._tracker = RestartTracker(self.config.policy, clock=clock)
        self._state = BackendState.STOPPED
        self._cause = "not started yet"
        self._since = time.time()
        self._proc: GuardedProcess | None = None
        self._port: int | None = None
        self._source: str | None = None
        self._device: str | None = None  # the launch's CUDA_VISIBLE_DEVICES
        self._ready_at: float | None = None
        self._in_flight = 0
        self._last_activity = time.monotonic()
        self._last_exit: ExitReport | None = None
        self._restarts = 0
        self._stopping = False
        self._log_offset = 0
        self.health = Health()
        self._start_task: asyncio.Task[str] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- what status reads ---------------------------------------------------
    @property
    def state(self) -> BackendState:
        if self._state is BackendState.READY and self._in_flight:
            return BackendState.BUSY
        return self._state

    @property
    def url(self) -> str | None:
        return f"http://{LOOPBACK}:{self._port}" if self._port else None

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def last_exit(self) -> ExitReport | None:
        return self._last_exit

    def snapshot(self) -> dict[str, Any]:
        """The backend block of ``/ml/status``: cheap, no I/O but a log tail read."""
        proc = self._proc
        uptime = self._clock() - self._ready_at if self._ready_at and proc else None
        return {
            "mode": "managed",
            "name": self._files.name,
            "device": self._device,
            "state": self.state.value,
            "cause": self._cause,
            "since": self._since,
            "pid": proc.pid if proc else None,
            "adopted": bool(proc and proc.adopted),
            "port": self._port if proc else None,
            "url": self.url if proc else None,
            "command_source": self._source,
            "uptime_s": round(uptime, 1) if uptime is not None else None,
            "restarts": self._restarts,
            "recent_crashes": self._tracker.recent_crashes,
            "in_flight": self._in_flight,
            "last_exit": self._last_exit.to_dict() if self._last_exit else None,
            "health": {
                "last_ok_at": self.health.last_ok_at,
                "last_error": self.health.last_error,
                "unresponsive_since": self.health.unresponsive_since,
            },
            "log_tail": self.log_tail().splitlines(),
        }

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return read_log_tail(self._files.log, lines=lines)

    # -- transitions ---------------------------------------------------------
    def _set(self, state: BackendState, cause: str) -> None:
        if state is not self._state or cause != self._cause:
            label = f"backend {self._files.name}".rstrip()
            log.info("%s %s -> %s: %s", label, self._state.value, state.value, cause)
        self._state, self._cause, self._since = state, cause, time.time()
        with contextlib.suppress(OSError):
            write_status(self._files.status, self.snapshot())

    async def ensure_ready(self) -> str:
        """The URL of a ready backend, starting one if needed (once, however many ask)."""
        if self._state is BackendState.READY and self.url:
            return self.url
        if self._state is BackendState.FAILED:
            summary = self._last_exit.summary if self._last_exit else self._cause
            hint = self._last_exit.hint if self._last_exit else None
            raise BackendError(
                f"The model backend is not running: {summary}",
                hint=(hint + " " if hint else "") + "Press Start to try again.",
            )
        if self._start_task is None or self._start_task.done():
            self._start_task = asyncio.create_task(self._start(), name="backend-start")
        # shield: a client that disconnects must not cancel the start for everyone.
        return await asyncio.shield(self._start_task)

    async def start(self) -> str:
        """An explicit start (the "Start server" button): clears a failed state."""
        if self._state is BackendState.FAILED:
            self._tracker.reset()
            self._set(BackendState.STOPPED, "start requested")
        return await self.ensure_ready()

    def begin_start(self) -> asyncio.Task[str] | None:
        """The "Start server" button without waiting: clears a failed state and returns the
        start task, with the state already ``starting`` (None: the backend is ready).
        A launch command that cannot be found fails here, at once (:class:`BackendError`)."""
        if self._state is BackendState.READY and self.url:
            return None
        if self._state is BackendState.FAILED:
            self._tracker.reset()
            self._set(BackendState.STOPPED, "start requested")
        if self._start_task is None or self._start_task.done():
            launch = self._launch()
            self._announce_start(launch)
            self._start_task = asyncio.create_task(self._start(launch), name="backend-start")
            # Nobody may await it: its failure is in the state, not an unretrieved error.
            self._start_task.add_done_callback(_retrieve)
        return self._start_task

    async def stop(
        self, *, cause: ExitCause = ExitCause.STOPPED, summary: str | None = None
    ) -> None:
        """Stop the backend's whole tree (polite, wait, kill) and forget it."""
        self._stopping = True
        try:
            for task in list(self._tasks):
                if task.get_name() == "backend-restart":
                    task.cancel()
            if self._start_task is not None and not self._start_task.done():
                self._start_task.cancel()
                with contextlib.suppress(BaseException):
                    await self._start_task
            proc, self._proc = self._proc, None
            if proc is not None:
                outcome = await proc.stop(graceful_timeout_s=self.config.stop_timeout_s)
                log.info("backend pid %s stopped (%s)", proc.pid, outcome)
                clear_record(self._files.record, only_pid=proc.pid)
            text = summary or "samgeo-api was stopped."
            self._last_exit = report(cause, text)
            self._ready_at = None
            self._set(BackendState.STOPPED, text)
        finally:
            self._stopping = False

    async def aclose(self) -> None:
        """Stop everything this supervisor started; used at sidecar shutdown."""
        await self.stop(summary="samgeo-api was stopped with the sidecar.")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def reset_failure(self) -> None:
        """Forget a failed state (for example after a successful install)."""
        if self._state is BackendState.FAILED:
            self._tracker.reset()
            self._set(BackendState.STOPPED, "ready to start")

    @contextlib.asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        """Mark a request in flight: the backend is busy, not hung, while it runs."""
        self._in_flight += 1
        self._last_activity = time.monotonic()
        try:
            yield
        finally:
            self._in_flight -= 1
            self._last_activity = time.monotonic()

    async def crash_report(self, wait_s: float = 1.0) -> ExitReport | None:
        """After a broken upstream connection: the exit report if the process died."""
        deadline = time.monotonic() + wait_s
        proc = self._proc
        while time.monotonic() < deadline:
            if proc is None or proc.returncode is not None or self._proc is not proc:
                break
            await asyncio.sleep(0.02)
        if proc is not None and proc.returncode is not None:
            # The watcher may not have run yet; classify from the same facts.
            return self._last_exit if self._proc is not proc else self._classify(proc)
        return None

    # -- start-up --------------------------------------------------------------
    def _launch(self) -> LaunchSpec:
        try:
            return self._resolve_launch()
        except BackendError as exc:
            self._last_exit = report(ExitCause.COMMAND_NOT_FOUND, exc.message)
            self._set(BackendState.FAILED, exc.message)
            raise

    def _announce_start(self, launch: LaunchSpec) -> None:
        self._source, self._device = launch.source, launch.env.get("CUDA_VISIBLE_DEVICES")
        if self._state is not BackendState.RESTARTING:
            self._set(BackendState.STARTING, f"starting samgeo-api from {launch.source}")

    async def _start(self, launch: LaunchSpec | None = None) -> str:
        if launch is None:
            launch = self._launch()
            self._announce_start(launch)
        for attempt in range(self.config.port_retries + 1):
            try:
                return await self._spawn_and_wait(launch)
            except _PortTaken:
                log.warning("port taken while starting (attempt %d); retrying", attempt + 1)
        assert self._last_exit is not None
        self._set(BackendState.FAILED, self._last_exit.summary)
        raise BackendStartError(self._last_exit.summary, hint=self._last_exit.hint)

    async def _spawn_and_wait(self, launch: LaunchSpec) -> str:
        port = free_port()
        argv = (*launch.argv, "--host", LOOPBACK, "--port", str(port))
        log_path = self._files.log
        self._log_offset = log_signature(log_path)[0]
        started = self._clock()
        try:
            proc = await GuardedProcess.start(
                argv, env=launch.env, log_path=log_path, cwd=launch.cwd
            )
        except OSError as exc:  # the guard itself could not start
            self._last_exit = report(
                ExitCause.COMMAND_NOT_FOUND, f"Could not start samgeo-api: {exc}"
            )
            self._set(BackendState.FAILED, self._last_exit.summary)
            raise BackendStartError(self._last_exit.summary, hint=self._last_exit.hint) from None
        self._proc, self._port = proc, port
        self.health = Health()  # the probes below fill in the version
        url = f"http://{LOOPBACK}:{port}"
        write_record(
            self._files.record,
            BackendRecord(proc.identity, url, port, argv, time.time(), os.getpid()),
        )
        limits = StartupLimits(
            self.config.start_stall_s, self.config.start_timeout_s, self.config.probe_interval_s
        )
        try:
            await wait_until_healthy(
                proc,
                lambda: self._probe(url, timeout_s=1.0),
                log_path=log_path,
                log_offset=self._log_offset,
                limits=limits,
                stopping=lambda: self._stopping,
            )
        except BaseException as exc:
            if self._proc is proc:  # nobody else took over: this start's process goes
                self._proc = None
                await proc.stop(graceful_timeout_s=2.0)
                clear_record(self._files.record, only_pid=proc.pid)
            if not isinstance(exc, StartupFailed):
                raise
            self._last_exit = exc.report
            if exc.report.cause is ExitCause.PORT_IN_USE:
                raise _PortTaken from None
            self._set(BackendState.FAILED, exc.report.summary)
            raise BackendStartError(exc.report.summary, hint=exc.report.hint) from None
        elapsed = self._clock() - started
        self._ready_at = self._clock()
        self._last_activity = time.monotonic()
        self._set(BackendState.READY, f"started in {elapsed:.1f} s from {launch.source}")
        self._follow(proc)
        return url

    async def _probe(self, url: str, *, timeout_s: float) -> bool:
        try:
            response = await self._http.get(f"{url}/health", timeout=timeout_s)
        except httpx.HTTPError as exc:
            self.health.last_error = exc.__class__.__name__
            return False
        if response.status_code != 200:
            self.health.last_error = f"HTTP {response.status_code}"
            return False
        with contextlib.suppress(ValueError):
            self.health.version = response.json().get("version")
        self.health.last_ok_at = time.time()
        self.health.last_error = None
        return True

    def _classify(self, proc: GuardedProcess, *, during_start: bool = False) -> ExitReport:
        tail = read_log_tail(self._files.log, since=self._log_offset, lines=40)
        return classify_exit(
            proc.returncode, tail, stopped_by_us=self._stopping, during_start=during_start
        )

    # -- leftovers from an earlier sidecar ------------------------------------------------
    async def recover_leftover(self) -> str | None:
        """Adopt a healthy backend an earlier sidecar left, or stop it; never touch others."""
        record = read_record(self._files.record)
        if record is None:
            return None
        proc = GuardedProcess.adopt(record.identity)
        if proc is None:
            clear_record(self._files.record)
            return (
                f"the recorded backend (pid {record.identity.pid}) is gone"
                " or the pid now belongs to another program; left it alone"
            )
        if await self._probe(record.url, timeout_s=ADOPT_PROBE_TIMEOUT_S):
            self._proc, self._port, self._source = proc, record.port, "an earlier sidecar"
            self._ready_at = self._clock()
            self._set(
                BackendState.READY, f"adopted samgeo-api pid {proc.pid} left by an earlier sidecar"
            )
            self._follow(proc)
            return f"adopted pid {proc.pid}"
        outcome = await proc.stop(graceful_timeout_s=self.config.stop_timeout_s)
        clear_record(self._files.record)
        self._last_exit = report(
            ExitCause.STOPPED,
            f"Stopped an unresponsive samgeo-api (pid {proc.pid}) left by an earlier sidecar.",
        )
        return f"stopped leftover pid {proc.pid} ({outcome})"


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
