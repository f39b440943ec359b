"""One sidecar per data folder.

Everything a sidecar keeps there assumes a single writer: the jobs and their
finished tiles (two sidecars would resume the same job twice and interleave its
files), the managed samgeo-api's record (each would adopt, restart and stop the
other's), the install. So a second sidecar pointed at a folder in use refuses to
start, with one sentence naming the first, rather than serving ``/ml/segment``
and refusing only jobs: a user who starts the app twice is better told at once
which process already serves this folder than left with two half-working ones.

The lock is an OS file lock (:mod:`filelock`, ``flock`` on POSIX): the kernel drops
it when its holder dies, even by SIGKILL, so a restart works at once. Who holds
it (pid, URL) is written beside it, read only while the lock is held by another.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from geolibre_env.errors import GeoLibreError

LOCK_NAME = "sidecar.lock"
HOLDER_NAME = "sidecar-holder.json"


class DataFolderBusy(GeoLibreError):
    """Another sidecar serves this data folder."""


class DataFolderLock:
    """Held for the sidecar's whole life; released by the kernel when it exits."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self._lock = FileLock(data / LOCK_NAME, blocking=False)

    @property
    def holder_path(self) -> Path:
        return self.data / HOLDER_NAME

    def acquire(self) -> None:
        """Take the lock, or raise :class:`DataFolderBusy` naming its holder.

        Refused, nothing is written: the lock file already exists (its holder made it)."""
        if not (self.data / LOCK_NAME).exists():
            self.data.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise DataFolderBusy(self._busy_message()) from None
        self.announce(url=None)

    def announce(self, *, url: str | None) -> None:
        """Record who holds the lock (the URL once the port is known)."""
        record = {"pid": os.getpid(), "url": url, "started_at": time.time()}
        tmp = self.holder_path.with_name(HOLDER_NAME + ".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, self.holder_path)

    def release(self) -> None:
        self._lock.release()

    def holder(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.holder_path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return data
        return {}

    def _busy_message(self) -> str:
        info = self.holder()
        who = [f"pid {info['pid']}"] if info.get("pid") else []
        if info.get("url"):
            who.append(f"listening on {info['url']}")
        named = f" ({', '.join(who)})" if who else ""
        return (
            f"Another GeoLibre sidecar{named} already uses the data folder {self.data}: "
            "use that one, or stop it first (quit the app that started it, or POST /shutdown "
            "to it), or give this one another GEOLIBRE_ML_HOME."
        )
