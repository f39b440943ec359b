"""Turn uv's verbose output into progress events (phases, packages, downloads).

uv has no machine-readable progress; its ``-v`` log lines are stable enough
to count resolution, downloads and installs. Lines we do not recognise are
ignored, so a newer uv degrades to coarser progress, never to an error.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from geolibre_env.progress import ProgressEvent, ProgressSink

_SELECTING = re.compile(r"Selecting: (\S+)")
_RESOLVED = re.compile(r"^Resolved (\d+) packages?")
_UNCACHED = re.compile(r"Identified uncached distribution: (\S+)")
_DOWNLOAD = re.compile(r"Sending fresh GET request for: \S*/([^/\s]+\.(?:whl|tar\.gz|zip))\b")
_PREPARED = re.compile(r"^Prepared (\d+) packages?")
_INSTALLED = re.compile(r"^Installed (\d+) packages?")
_ADDED = re.compile(r"^ \+ (\S+)")
_AUDITED = re.compile(r"^Audited (\d+) packages?")
BYTES_EVERY_S = 1.0


@dataclass
class UvProgress:
    """Feed it uv's lines (and ticks); it emits :class:`ProgressEvent`s for ``phase``."""

    phase: str
    sink: ProgressSink
    disk_path: Path | None = None  # where uv's cache lives: bytes arriving show up there
    resolved: int = 0
    to_fetch: int = 0
    fetched: int = 0
    installed: int = 0
    _disk_start: int | None = field(default=None, repr=False)
    _last_bytes_at: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.disk_path is not None:
            self._disk_start = _free_bytes(self.disk_path)

    def _emit(self, message: str, done: int | None = None, total: int | None = None) -> None:
        extra = {"bytes_written": self.bytes_written()} if self.disk_path else {}
        self.sink(ProgressEvent(self.phase, message, done, total, "packages", extra=extra))

    def bytes_written(self) -> int | None:
        """Bytes that reached the disk holding uv's cache since we started (approximate)."""
        if self._disk_start is None or self.disk_path is None:
            return None
        now = _free_bytes(self.disk_path)
        return max(0, self._disk_start - now) if now is not None else None

    def line(self, text: str) -> None:
        text = text.removeprefix("DEBUG ").strip("\r")
        if match := _SELECTING.search(text):
            self.resolved += 1
            if self.resolved % 10 == 1:
                self._emit(f"resolving dependencies ({match.group(1)})")
        elif match := _RESOLVED.search(text):
            self.resolved = int(match.group(1))
            self._emit(f"resolved {self.resolved} packages")
        elif _UNCACHED.search(text):
            self.to_fetch += 1
        elif match := _DOWNLOAD.search(text):
            self.fetched += 1
            total = max(self.to_fetch, self.fetched)
            self._emit(f"downloading {match.group(1)}", self.fetched, total)
        elif match := _PREPARED.search(text):
            count = int(match.group(1))
            self._emit(f"downloaded and unpacked {count} packages", count, count)
        elif _ADDED.search(text.rstrip()) and text.startswith(" +"):
            self.installed += 1
        elif match := _INSTALLED.search(text):
            count = int(match.group(1))
            self._emit(f"installed {count} packages", count, count)
        elif match := _AUDITED.search(text):
            self._emit(f"all {match.group(1)} packages already installed")

    def tick(self) -> None:
        """Called about every second while uv runs: report bytes even when uv is quiet."""
        now = time.monotonic()
        if self.disk_path is None or now - self._last_bytes_at < BYTES_EVERY_S:
            return
        self._last_bytes_at = now
        written = self.bytes_written()
        if written and written >= 1_000_000:
            self._emit(
                f"{written / 1e6:.0f} MB written so far", self.fetched, self.to_fetch or None
            )


def _free_bytes(path: Path) -> int | None:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None
