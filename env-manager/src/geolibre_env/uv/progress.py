"""Turn uv's verbose output into progress events (phases, packages, downloads).

uv has no machine-readable progress; its ``-v`` log lines are stable enough
to count resolution, downloads and installs. Lines we do not recognise are
ignored, so a newer uv degrades to coarser progress, never to an error.

Bytes are what arrived in uv's cache during this step (:class:`CacheGrowth`):
uv unpacks each download there (in a ``.tmp*`` folder, then renamed into
``archive-v0/``) before linking it into the environment, so the growth of the
cache is what was downloaded, unpacked (with the index pages uv fetched).
Nothing else on the disk counts: not other programs, not the environment's
files (uv links them from the cache).
"""

from __future__ import annotations

import os
import re
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


class CacheGrowth:
    """Bytes in entries of uv's cache that were not there when we started.

    Entries are the cache's top-level items and the items one level down
    (``archive-v0/<id>``, ``wheels-v5/<index>``); a ``.tmp*`` folder (a download
    being unpacked) counts whole. An entry under ``archive-*`` is complete (uv
    renames it there when done), so its size is measured once.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._before = {entry for top in _children(root) for entry in (top, *_children(top))}
        self._settled: dict[Path, int] = {}

    def bytes(self) -> int:
        total = 0
        for top in _children(self.root):
            top_is_new = top not in self._before
            if top.name.startswith(".tmp") or not top.is_dir():
                total += _tree_size(top) if top_is_new else 0
                continue
            for entry in _children(top):
                if top_is_new or entry not in self._before:
                    total += self._size(entry)
        return total

    def _size(self, entry: Path) -> int:
        if entry in self._settled:
            return self._settled[entry]
        size = _tree_size(entry)
        if entry.parent.name.startswith("archive-"):
            self._settled[entry] = size
        return size


@dataclass
class UvProgress:
    """Feed it uv's lines (and ticks); it emits :class:`ProgressEvent`s for ``phase``."""

    phase: str
    sink: ProgressSink
    cache_dir: Path | None = None  # uv's cache (UV_CACHE_DIR): downloads arrive there
    resolved: int = 0
    to_fetch: int = 0
    fetched: int = 0
    installed: int = 0
    _growth: CacheGrowth | None = field(default=None, repr=False)
    _last_bytes_at: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.cache_dir is not None:
            self._growth = CacheGrowth(self.cache_dir)

    def _emit(self, message: str, done: int | None = None, total: int | None = None) -> None:
        downloaded = self.bytes_downloaded()
        extra = {"bytes_downloaded": downloaded} if downloaded is not None else {}
        self.sink(ProgressEvent(self.phase, message, done, total, "packages", extra=extra))

    def bytes_downloaded(self) -> int | None:
        """Bytes uv downloaded into its cache during this step, unpacked (None: no cache)."""
        return self._growth.bytes() if self._growth is not None else None

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
        if self._growth is None or now - self._last_bytes_at < BYTES_EVERY_S:
            return
        self._last_bytes_at = now
        downloaded = self._growth.bytes()
        if downloaded >= 1_000_000:
            self._emit(
                f"{downloaded / 1e6:.0f} MB downloaded so far (unpacked)",
                self.fetched,
                self.to_fetch or None,
            )


def _children(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as items:
            return [Path(item.path) for item in items]
    except OSError:  # not a folder, or gone
        return []


def _tree_size(path: Path) -> int:
    """Bytes in the files under ``path`` (a file: its size); what vanishes meanwhile is 0."""
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
    except OSError:
        return 0
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total
