"""The tile worker: the model environment's tile runner as one long-lived process,
supervised like samgeo-api.

Started on the first job's first step, under the backend's guard (its own process
group, its stderr to a size-rotated ``tile-worker.log``, killed as a tree with the
sidecar, even one killed with SIGKILL). A crash is answered by the backend's
restart policy (backoff, then a crash-loop verdict); the step it was running is
sent once more to the new worker (a cut keeps the tiles it already wrote, a merge
starts over), so a job survives one crash without redoing finished work. A
cancelled step ends the worker's current work the only sure way, by stopping it;
the next step starts a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from geolibre_env.backend.exit_causes import classify_exit
from geolibre_env.backend.log import log_signature, read_log_tail
from geolibre_env.backend.process import GuardedProcess
from geolibre_env.backend.restart_policy import RestartTracker
from geolibre_env.jobs import tile_runner
from geolibre_env.redact import redact

from geolibre_sidecar.settings import SidecarSettings

log = logging.getLogger("geolibre.jobs.worker")

WORKER = Path(tile_runner.__file__).with_name("tile_worker.py")
LOG_NAME = "tile-worker.log"
READY_TIMEOUT_S = 60.0  # a cold start imports nothing heavy; a loaded disk may be slow
STOP_TIMEOUT_S = 3.0

OnEvent = Callable[[dict[str, Any]], Awaitable[None]]


class WorkerFailed(Exception):
    """A step could not be done; ``detail`` (and ``hint``) are for the user."""

    def __init__(self, detail: str, hint: str | None = None) -> None:
        super().__init__(detail)
        self.detail, self.hint = detail, hint


class _Crashed(Exception):
    pass


class TileWorker:
    """One worker process for every job of this sidecar; steps run one at a time."""

    def __init__(
        self,
        settings: SidecarSettings,
        python: Callable[[], Path | None],
    ) -> None:
        self.settings = settings
        self.python = python
        self.log_path = settings.env.paths.logs / LOG_NAME
        # The backend's restart policy, with its settings (GEOLIBRE_ML_RESTART_*).
        self.tracker = RestartTracker(settings.supervisor.policy)
        self.state = "not_started"  # starting, ready, restarting, failed, stopped
        self.pid: int | None = None
        self.restarts = 0
        self.last_exit: str | None = None
        self.verdict: str | None = None
        self._proc: GuardedProcess | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._one_step = asyncio.Lock()
        self._recycling = False
        self._closing = False
        self._launches = 0
        self._log_from = 0  # the log's size when the running worker started

    def snapshot(self) -> dict[str, Any]:
        """For ``/ml/status`` ``jobs.worker``."""
        return {
            "state": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "detail": self.verdict,
            "log": str(self.log_path),
        }

    async def run(self, op: str, args: list[str], on_event: OnEvent) -> dict[str, Any]:
        """Run one step (``cut`` or ``merge``); its last event, or :class:`WorkerFailed`."""
        async with self._one_step:
            generation = 0
            for attempt in (1, 2):
                generation = await self._ensure_ready(newer_than=generation)
                try:
                    return await self._exchange(op, args, on_event)
                except _Crashed:
                    log.warning("the tile worker crashed during a %s (attempt %d)", op, attempt)
                except asyncio.CancelledError:
                    await self._recycle()
                    raise
        raise WorkerFailed(
            f"The tile worker crashed twice during the {op} ({self.last_exit}).",
            hint=f"Its log is {self.log_path}.",
        )

    async def aclose(self) -> None:
        """The sidecar stops: stop the worker's tree and its supervision."""
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._proc is not None:
            await self._proc.stop(graceful_timeout_s=STOP_TIMEOUT_S)
        await self._set("stopped", pid=None)

    async def _ensure_ready(self, *, newer_than: int) -> int:
        """Wait for a ready worker started after launch number ``newer_than`` (0: any);
        its launch number. The first try of a step also starts one after a crash loop:
        a new step is the user's new try, as a Start press is for samgeo-api."""
        fresh = newer_than == 0
        if self.state == "failed" and fresh:
            self.tracker.reset()
        if self._supervisor is None or self._supervisor.done():
            if self.state == "failed" and not fresh:
                raise self._failed()
            self.state = "starting"  # now, so the wait below is for this new start
            self._supervisor = asyncio.create_task(self._supervise(), name="tile-worker")
        async with self._changed:
            await self._changed.wait_for(
                lambda: (
                    self.state == "failed"
                    or (self.state == "ready" and self._launches > newer_than)
                )
            )
        if self.state == "failed":
            raise self._failed()
        return self._launches

    def _failed(self) -> WorkerFailed:
        return WorkerFailed(
            f"The tile worker cannot run: {self.verdict}.", hint=f"Its log is {self.log_path}."
        )

    async def _set(self, state: str, **facts: Any) -> None:
        self.state = state
        for key, value in facts.items():
            setattr(self, key, value)
        async with self._changed:
            self._changed.notify_all()

    async def _supervise(self) -> None:
        """Start the worker; after each crash ask the restart policy, as for samgeo-api."""
        while True:
            await self._set("starting")
            ready_at = None
            try:
                proc = await self._launch()
                ready_at = time.monotonic()
                self._launches += 1
                await self._set("ready")
                code = await proc.wait()
            except WorkerFailed as exc:
                await self._set("failed", verdict=exc.detail.rstrip("."), pid=None)
                return
            except _Crashed:
                code = self._proc.returncode if self._proc is not None else None
            if self._closing:
                return
            if self._recycling:
                self._recycling = False
                await self._set("stopped", pid=None)
                return
            # Only this run's lines: an older run's text must not name this exit's cause.
            report = classify_exit(code, read_log_tail(self.log_path, since=self._log_from))
            how = f"signal {report.signal_name}" if report.signal_name else f"exit code {code}"
            ready_for = None if ready_at is None else time.monotonic() - ready_at
            decision = self.tracker.on_crash(report.cause, ready_for_s=ready_for)
            log.warning("the tile worker ended (%s): %s", how, decision.reason)
            if not decision.restart:
                await self._set("failed", verdict=decision.reason, last_exit=how, pid=None)
                return
            await self._set("restarting", last_exit=how, pid=None)
            await asyncio.sleep(decision.delay_s)
            self.restarts += 1

    async def _launch(self) -> GuardedProcess:
        python = self.python()
        if python is None:
            raise WorkerFailed("the model environment, which cuts and merges tiles, is missing")
        env = dict(self.settings.env.environ)
        env.pop("GEOLIBRE_SIDECAR_TOKEN", None)
        self._log_from = log_signature(self.log_path)[0]
        proc = await GuardedProcess.start(
            [str(python), str(WORKER)], env=env, log_path=self.log_path, stdio=True
        )
        self._proc = proc
        assert proc.stdout is not None
        line = b"?"
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT_S)
            self.pid = int(json.loads(line)["pid"])
        except (TimeoutError, ValueError, KeyError, TypeError):
            if not line:  # it is exiting: let it, so its own exit status is what we report
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            await proc.stop(graceful_timeout_s=STOP_TIMEOUT_S)
            raise _Crashed from None
        log.info("tile worker ready (pid %d)", self.pid)
        return proc

    async def _exchange(self, op: str, args: list[str], on_event: OnEvent) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps({"op": op, "args": args}).encode() + b"\n")
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            raise _Crashed from None
        last: dict[str, Any] = {}
        while line := await proc.stdout.readline():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "done":
                    return self._answer(op, last, event.get("code"))
                last = event
                await on_event(event)
        raise _Crashed

    def _answer(self, op: str, last: dict[str, Any], code: object) -> dict[str, Any]:
        if last.get("event") == "error":
            detail = redact(str(last.get("detail"))).rstrip()
            detail += "" if detail.endswith(".") else "."  # GDAL's messages end without one
            hint = None if "environment" in detail else "Send a raster GDAL reads, with a CRS."
            raise WorkerFailed(detail, hint=hint)
        if code != 0:
            raise WorkerFailed(
                f"The tile runner's {op} ended with code {code}.",
                hint=f"The tile worker's log is {self.log_path}.",
            )
        return last

    async def _recycle(self) -> None:
        """Stop the worker mid-step (the step was cancelled); the next step starts one."""
        if self._proc is not None and self._proc.returncode is None:
            self._recycling = True
            await self._proc.stop(graceful_timeout_s=0)
            if self._supervisor is not None:  # it has seen the exit: the next step starts anew
                with contextlib.suppress(asyncio.CancelledError):
                    await self._supervisor
