"""A job's folder on disk, so jobs and their finished tiles survive a restart.

``<data>/jobs/<id>/``: ``job.json`` (what was asked and the state, rewritten
atomically), ``raster`` (the upload), ``plan.json`` and ``tiles/`` (written by the
tile runner), ``results/NNNNN.json`` (one per finished tile, renamed into place
whole), ``events.jsonl`` (appended) and ``result.geojson`` (the merged answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geolibre_sidecar.sse import MAX_EVENTS

ACTIVE_STATES = ("queued", "cutting", "running", "merging")
FINAL_STATES = ("succeeded", "failed", "cancelled")


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(4)


def valid_job_id(job_id: str) -> bool:
    return 0 < len(job_id) <= 64 and all(c.isalnum() or c == "-" for c in job_id)


@dataclass
class Job:
    """One tiled job: its request, its state and its events."""

    id: str
    folder: Path
    mode: str
    fields: dict[str, str]
    tile_size: int
    overlap: int
    created_at: float = field(default_factory=time.time)
    state: str = "queued"
    finished_at: float | None = None
    error: dict[str, Any] | None = None
    tiles_total: int | None = None
    skipped: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # tile index -> last error
    features: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    # This run only (for the estimate): when tiles started and how many finished since.
    run_started: float | None = None
    done_this_run: int = 0
    done_count: int = 0
    cancel_requested: bool = False

    @property
    def running(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def raster(self) -> Path:
        return self.folder / "raster"

    @property
    def plan_path(self) -> Path:
        return self.folder / "plan.json"

    @property
    def results(self) -> Path:
        return self.folder / "results"

    @property
    def result_path(self) -> Path:
        return self.folder / "result.geojson"

    def result_file(self, index: int) -> Path:
        return self.results / f"{index:05d}.json"

    def done_tiles(self) -> set[int]:
        """Tiles whose answer is on disk (the resume point)."""
        if not self.results.is_dir():
            return set()
        return {int(p.stem) for p in self.results.glob("*.json") if p.stem.isdigit()}

    def record(self) -> dict[str, Any]:
        keys = (
            "id",
            "mode",
            "fields",
            "tile_size",
            "overlap",
            "created_at",
            "state",
            "finished_at",
            "error",
            "tiles_total",
            "skipped",
            "failures",
            "features",
        )
        return {key: getattr(self, key) for key in keys}

    def save(self) -> None:
        write_json_atomic(self.folder / "job.json", self.record())

    def add_event(self, event: dict[str, Any]) -> None:
        event["id"] = (self.events[-1]["id"] if self.events else 0) + 1
        event.setdefault("time", round(time.time(), 3))
        self.events.append(event)
        if len(self.events) > MAX_EVENTS:  # keep the first events and the recent ones
            del self.events[100:200]
        with (self.folder / "events.jsonl").open("a", encoding="utf-8") as log:
            log.write(json.dumps(event) + "\n")


class JobStore:
    """The jobs folder: create, load after a restart, delete."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, mode: str, fields: dict[str, str], tile_size: int, overlap: int) -> Job:
        job_id = new_job_id()
        folder = self.root / job_id
        folder.mkdir(parents=True)
        job = Job(job_id, folder, mode, fields, tile_size, overlap)
        return job

    def load_all(self) -> list[Job]:
        jobs = []
        if not self.root.is_dir():
            return jobs
        for folder in sorted(self.root.iterdir()):
            try:
                record = json.loads((folder / "job.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # never finished its upload: nothing to resume
            keep = {k: v for k, v in record.items() if k != "id"}
            job = Job(id=folder.name, folder=folder, **keep)
            job.events = _read_events(folder / "events.jsonl")
            job.done_count = len(job.done_tiles())
            jobs.append(job)
        return jobs

    def delete(self, job: Job) -> None:
        shutil.rmtree(job.folder, ignore_errors=True)


def _read_events(path: Path) -> list[dict[str, Any]]:
    events = []
    with contextlib.suppress(OSError):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))  # a line cut by a kill is skipped
    return events[:100] + events[100:][-(MAX_EVENTS - 100) :]
