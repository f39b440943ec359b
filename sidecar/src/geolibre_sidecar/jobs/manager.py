"""Runs tiled jobs: cut (the tile worker, in the model environment), send every tile
to the pool (a failed tile is retried on another backend), merge. State lives on disk
(:mod:`.store`), so a job interrupted by a restart resumes where it stopped: tiles
whose answer is on disk are never sent again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from geolibre_env.redact import redact

from geolibre_sidecar.jobs.pool import Member, Pool, TileFailed, TileRefused
from geolibre_sidecar.jobs.store import FINAL_STATES, Job, JobStore, write_json_atomic
from geolibre_sidecar.jobs.worker import TileWorker, WorkerFailed
from geolibre_sidecar.settings import SidecarSettings
from geolibre_sidecar.sse import follow, notify

log = logging.getLogger("geolibre.jobs")

MAX_ATTEMPTS = 3  # per tile, each on a backend that has not failed it yet if one is left
SET_ASIDE_AFTER = 3  # failures in a row: the backend gets no more tiles in this job
RETRY_PAUSE_S = 0.5


class JobFailed(Exception):
    def __init__(self, detail: str, hint: str | None = None) -> None:
        super().__init__(detail)
        self.detail, self.hint = detail, hint


class JobManager:
    """Every job of this data folder, and the tasks running the active ones."""

    def __init__(
        self,
        settings: SidecarSettings,
        store: JobStore,
        pool: Pool,
        python: Callable[[], Path | None],
    ) -> None:
        self.settings = settings
        self.store = store
        self.pool = pool
        self.python = python
        self.worker = TileWorker(settings, python)
        self.jobs: dict[str, Job] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def startup(self) -> None:
        """Load the jobs on disk and resume those a stop interrupted."""
        for job in await asyncio.to_thread(self.store.load_all):
            self.jobs[job.id] = job
            if job.running:
                log.info("resuming job %s (%s)", job.id, job.state)
                self._set(job, "queued", resumed=True)
                self.start(job)

    def start(self, job: Job) -> None:
        self.jobs[job.id] = job
        self._tasks[job.id] = asyncio.create_task(self._run(job), name=f"job-{job.id}")

    def snapshot(self, job: Job) -> dict[str, Any]:
        done = job.done_count
        end = job.finished_at or time.time()
        left = None
        if job.running and job.run_started and job.done_this_run and job.tiles_total:
            pace = (time.monotonic() - job.run_started) / job.done_this_run
            left = round(pace * max(job.tiles_total - done - len(job.failures), 0), 1)
        return {
            "id": job.id,
            "state": job.state,
            "mode": job.mode,
            "tile_size": job.tile_size,
            "overlap": job.overlap,
            "tiles_done": done,
            "tiles_total": job.tiles_total,
            "tiles_skipped": job.skipped,
            "failures": [{"tile": int(k), "detail": v} for k, v in job.failures.items()],
            "created_at": job.created_at,
            "finished_at": job.finished_at,
            "elapsed_s": round(end - job.created_at, 1),
            "estimated_left_s": left,
            "features": job.features,
            "error": job.error,
        }

    def _set(self, job: Job, state: str, **extra: Any) -> None:
        job.state = state
        if state in FINAL_STATES:
            job.finished_at = time.time()
        job.save()
        kind = "end" if state in FINAL_STATES else "state"
        job.add_event({"event": kind, "state": state, **extra})

    async def _say(self, job: Job, event: dict[str, Any]) -> None:
        job.add_event(event)
        await notify(job)

    async def _run(self, job: Job) -> None:
        try:
            if not job.plan_path.exists():
                self._set(job, "cutting")
                await notify(job)
                await self._script(
                    job,
                    "cut",
                    str(job.raster),
                    str(job.folder),
                    str(job.tile_size),
                    str(job.overlap),
                )
            plan = json.loads(job.plan_path.read_text(encoding="utf-8"))
            job.tiles_total, job.skipped = len(plan["tiles"]), plan["skipped"]
            self._set(job, "running", tiles_total=job.tiles_total, skipped=job.skipped)
            await notify(job)
            await self._dispatch(job, plan["tiles"])
            self._set(job, "merging")
            await notify(job)
            merged = await self._script(job, "merge", str(job.folder))
            job.features = merged.get("features")
            self._set(job, "succeeded", features=job.features, failures=len(job.failures))
        except JobFailed as exc:
            job.error = {"detail": exc.detail, **({"hint": exc.hint} if exc.hint else {})}
            log.warning("job %s failed: %s", job.id, exc.detail)
            self._set(job, "failed", error=job.error)
        except asyncio.CancelledError:
            if job.state not in FINAL_STATES and job.cancel_requested:
                self._set(job, "cancelled")
                await notify(job)
            raise  # a sidecar stop leaves the job active on disk: it resumes next time
        except Exception:
            log.exception("job %s hit an unexpected error", job.id)
            job.error = {"detail": "The job hit an unexpected error; details are in the log."}
            self._set(job, "failed", error=job.error)
        await notify(job)

    async def _dispatch(self, job: Job, tiles: list[dict[str, Any]]) -> None:
        done = job.done_tiles()
        job.done_count = len(done & {t["index"] for t in tiles})
        job.results.mkdir(exist_ok=True)
        by_index = {t["index"]: t for t in tiles}
        queue = collections.deque(i for i in by_index if i not in done)
        tried: dict[int, set[str]] = collections.defaultdict(set)
        attempts: collections.Counter[int] = collections.Counter()
        outstanding = len(queue)
        wake = asyncio.Event()
        members = await self.pool.members_for_job()
        for member in members:
            member.failures_in_row, member.set_aside = 0, False
        job.run_started, job.done_this_run = time.monotonic(), 0

        def live() -> set[str]:
            return {m.name for m in members if not m.set_aside}

        def pick(member: Member) -> int | None:
            for index in queue:
                if member.name not in tried[index] or live() <= tried[index]:
                    queue.remove(index)
                    return index
            return None

        def give_up(index: int, detail: str) -> None:
            nonlocal outstanding
            job.failures[str(index)] = detail
            outstanding -= 1
            job.add_event({"event": "tile_failed", "tile": index, "detail": detail})

        async def worker(member: Member) -> None:
            nonlocal outstanding
            while outstanding > 0 and not member.set_aside:
                index = pick(member)
                if index is None:
                    wake.clear()
                    await wake.wait()
                    continue
                tile = by_index[index]
                data = await asyncio.to_thread((job.folder / "tiles" / tile["file"]).read_bytes)
                try:
                    answer = await self.pool.segment(
                        member, job.mode, job.fields, data, tile["file"]
                    )
                except TileRefused as exc:
                    raise JobFailed(str(exc)) from None
                except TileFailed as exc:
                    detail = redact(str(exc))
                    member.failures_in_row += 1
                    member.last_error = detail
                    tried[index].add(member.name)
                    log.warning(
                        "job %s tile %d failed on %s: %s", job.id, index, member.name, detail
                    )
                    attempts[index] += 1
                    if attempts[index] >= MAX_ATTEMPTS:
                        give_up(index, detail)
                    else:
                        queue.appendleft(index)
                        job.add_event(
                            {
                                "event": "tile_retry",
                                "tile": index,
                                "backend": member.name,
                                "detail": detail,
                            }
                        )
                    if member.failures_in_row >= SET_ASIDE_AFTER:
                        member.set_aside = True
                        job.add_event(
                            {"event": "backend_set_aside", "backend": member.name, "detail": detail}
                        )
                        if not live():  # nobody left: the rest cannot be done
                            for rest in list(queue):
                                give_up(rest, f"every backend failed; last: {detail}")
                            queue.clear()
                    await notify(job)
                    wake.set()
                    await asyncio.sleep(RETRY_PAUSE_S * member.failures_in_row)
                    continue
                await asyncio.to_thread(write_json_atomic, job.result_file(index), answer)
                member.failures_in_row = 0
                member.tiles_done += 1
                outstanding -= 1
                job.done_count += 1
                job.done_this_run += 1
                await self._say(
                    job,
                    {
                        "event": "tile",
                        "tile": index,
                        "backend": member.name,
                        "done": job.done_count,
                        "total": job.tiles_total,
                    },
                )
            wake.set()

        async with asyncio.TaskGroup() as group:
            for member in members:
                for _ in range(member.concurrency):
                    group.create_task(worker(member))
        if job.failures and len(job.failures) == len(tiles):
            raise JobFailed(
                "No tile could be segmented: " + next(iter(job.failures.values())),
                hint="See GET /ml/status for the backends, and the sidecar's log.",
            )

    async def _script(self, job: Job, op: str, *args: str) -> dict[str, Any]:
        """Run a step on the tile worker; its last event, or JobFailed with its sentence."""
        if self.python() is None:
            raise JobFailed(
                "The model environment is not installed; it cuts and merges tiles.",
                hint="Install it (Install in the app, or geolibre-ml install).",
            )

        async def progress(event: dict[str, Any]) -> None:
            if event.get("event") == "cut" and (
                event["done"] % 50 == 0 or event["done"] == event["total"]
            ):
                await self._say(
                    job, {"event": "cut", "done": event["done"], "total": event["total"]}
                )

        try:
            return await self.worker.run(op, list(args), progress)
        except WorkerFailed as exc:
            raise JobFailed(exc.detail, hint=exc.hint) from None

    async def cancel(self, job: Job) -> None:
        job.cancel_requested = True
        task = self._tasks.get(job.id)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if job.running:  # cancelled before its task ran
            self._set(job, "cancelled")
            await notify(job)

    async def delete(self, job: Job) -> None:
        if job.running:
            await self.cancel(job)
        self.jobs.pop(job.id, None)
        await asyncio.to_thread(self.store.delete, job)

    def status(self) -> dict[str, Any]:
        """For ``/ml/status``: how many jobs run, and how each backend of the pool fares."""
        active = sum(1 for job in self.jobs.values() if job.running)
        return {
            "active": active,
            "backends": self.pool.snapshot(),
            "worker": self.worker.snapshot(),
        }

    def events(self, job: Job, after: int) -> AsyncIterator[dict[str, Any]]:
        return follow(job, after)

    async def aclose(self) -> None:
        """The sidecar is stopping: stop the tasks and the worker, leave the jobs active
        on disk."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.worker.aclose()
