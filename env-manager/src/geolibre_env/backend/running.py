"""The supervisor's tasks while a backend runs: notice its exit and restart it
by the policy, probe its health while idle (a hang is restarted, a busy backend
is not), keep the model list, and unload it after an idle time.

:class:`RunningBackend` is the part of :class:`~geolibre_env.backend.supervisor.Supervisor`
that does this; the state it reads and the transitions it calls (``_set``,
``_start``, ``stop``, ``ensure_ready``, ``_probe``, ``_classify``) are the
supervisor's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from geolibre_env.backend.exit_causes import ExitCause, ExitReport
from geolibre_env.backend.process import GuardedProcess
from geolibre_env.backend.record import clear_record
from geolibre_env.backend.restart_policy import RestartTracker
from geolibre_env.backend.supervisor_state import (
    BackendFiles,
    BackendState,
    Health,
    SupervisorConfig,
)
from geolibre_env.errors import BackendError


class RunningBackend:
    """Follows a ready backend (a base of the supervisor, never used alone)."""

    config: SupervisorConfig
    health: Health
    _clock: Callable[[], float]
    _files: BackendFiles
    _http: httpx.AsyncClient
    _tracker: RestartTracker
    _state: BackendState
    _proc: GuardedProcess | None
    _ready_at: float | None
    _in_flight: int
    _last_activity: float
    _last_exit: ExitReport | None
    _restarts: int
    _stopping: bool
    _start_task: asyncio.Task[str] | None
    _tasks: set[asyncio.Task[Any]]

    # The supervisor's own, called from here.
    url: str | None
    _set: Callable[[BackendState, str], None]
    _start: Callable[[], Awaitable[str]]
    _probe: Callable[..., Awaitable[bool]]
    _classify: Callable[..., ExitReport]
    stop: Callable[..., Awaitable[None]]
    ensure_ready: Callable[[], Awaitable[str]]

    def _spawn_task(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _follow(self, proc: GuardedProcess) -> None:
        """The tasks that look after a ready backend: exit, health, idle time."""
        self._spawn_task(self._watch(proc), "backend-watch")
        self._spawn_task(self._keep_health(proc), "backend-health")
        if self.config.idle_unload_s > 0:
            self._spawn_task(self._unload_when_idle(proc), "backend-idle")

    async def _watch(self, proc: GuardedProcess) -> None:
        """Notice an exit at once (we await the process; no polling for our own child)."""
        await proc.wait()
        if self._stopping or self._proc is not proc:
            return
        self._proc = None
        clear_record(self._files.record, only_pid=proc.pid)
        exit_report = self._classify(proc)
        self._last_exit = exit_report
        ready_for = self._clock() - self._ready_at if self._ready_at else None
        self._ready_at = None
        decision = self._tracker.on_crash(exit_report.cause, ready_for_s=ready_for)
        if not decision.restart:
            self._set(
                BackendState.FAILED, f"{exit_report.summary} Not restarting: {decision.reason}."
            )
            return
        self._set(BackendState.RESTARTING, f"{exit_report.summary} {decision.reason}.")
        self._spawn_task(self._restart_after(decision.delay_s), "backend-restart")

    async def _restart_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if self._state is not BackendState.RESTARTING:  # a request already started it
            return
        self._restarts += 1
        if self._start_task is None or self._start_task.done():
            self._start_task = asyncio.create_task(self._start(), name="backend-start")
        with contextlib.suppress(BackendError):
            await asyncio.shield(self._start_task)

    async def _keep_health(self, proc: GuardedProcess) -> None:
        """Probe only while idle: a slow /health during inference is not an outage."""
        cfg = self.config
        await self._refresh_models()
        while self._proc is proc:
            await asyncio.sleep(cfg.health_interval_s)
            if self._proc is not proc or self._in_flight:
                continue
            url = self.url
            if url and await self._probe(url, timeout_s=cfg.health_timeout_s):
                self.health.unresponsive_since = None
                continue
            now = time.time()
            if self._in_flight:  # a request started while we waited: busy, not hung
                continue
            since = self.health.unresponsive_since = self.health.unresponsive_since or now
            if now - since >= cfg.hang_restart_s and self._proc is proc:
                await self.stop(
                    cause=ExitCause.UNRESPONSIVE,
                    summary=f"samgeo-api stopped answering for {now - since:.0f} s while idle.",
                )
                self._restarts += 1
                with contextlib.suppress(BackendError):
                    await self.ensure_ready()
                return

    async def _refresh_models(self) -> None:
        url = self.url
        if not url:
            return
        try:
            response = await self._http.get(f"{url}/models", timeout=self.config.health_timeout_s)
            if response.status_code == 200:
                self.health.models = response.json()
        except (httpx.HTTPError, ValueError):
            pass

    async def clear_models(self) -> None:
        """Ask samgeo-api to drop every cached model (frees GPU memory)."""
        url = self.url
        if url:
            await self._http.delete(f"{url}/models", timeout=None)
            await self._refresh_models()

    async def _unload_when_idle(self, proc: GuardedProcess) -> None:
        idle_s = self.config.idle_unload_s
        while self._proc is proc:
            wait = self._last_activity + idle_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(min(wait, 60.0))
                continue
            if self._in_flight or self._state is not BackendState.READY:
                await asyncio.sleep(min(idle_s, 60.0))
                continue
            await self.stop(
                cause=ExitCause.IDLE_UNLOADED,
                summary=f"samgeo-api was stopped after {idle_s:g} s idle to free memory; "
                "the next request starts it again.",
            )
            return
