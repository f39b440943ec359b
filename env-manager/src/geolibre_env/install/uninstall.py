"""Removing the model environment (and, if asked, the weights and the package cache),
saying what was freed and what could not be removed, and why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from geolibre_env.install.lock import InstallLock
from geolibre_env.paths import Paths


@dataclass
class UninstallReport:
    freed_bytes: int = 0
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # "path: why"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def format_text(self) -> str:
        lines = [f"Freed {self.freed_bytes / 1e9:.2f} GB."]
        lines += [f"  removed {path}" for path in self.removed]
        lines += [f"  could not remove {item}" for item in self.kept]
        if not self.removed and not self.kept:
            lines = ["Nothing to remove: the model backend is not installed."]
        return "\n".join(lines)


def folder_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _remove(path: Path, report: UninstallReport) -> None:
    if not path.exists() and not path.is_symlink():
        return
    size = folder_bytes(path) if path.is_dir() else path.stat().st_size
    failures: list[str] = []

    def on_error(_func: object, failed: str, exc: BaseException) -> None:
        failures.append(f"{failed}: {getattr(exc, 'strerror', None) or exc}")

    if path.is_dir() and not path.is_symlink():
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=on_error)
        else:  # 3.11 has only the older hook (deprecated later)
            shutil.rmtree(path, onerror=lambda func, failed, info: on_error(func, failed, info[1]))
    else:
        try:
            path.unlink()
        except OSError as exc:
            failures.append(f"{path}: {exc.strerror or exc}")
    left = folder_bytes(path) if path.exists() else 0
    report.freed_bytes += size - left
    if failures:
        report.kept.append(
            f"{path} ({len(failures)} file(s), e.g. {failures[0]}; a running program may hold "
            "them: stop the backend and try again)"
        )
    else:
        report.removed.append(str(path))


def targets(paths: Paths, *, weights: bool = False, cache: bool = False) -> list[Path]:
    """What ``uninstall`` would remove now (only what exists)."""
    wanted = [paths.active_pointer, paths.envs_dir]
    if weights:
        wanted += [paths.hf_home, paths.checkpoints_dir]
    if cache:
        wanted.append(paths.uv_cache)
    return [p for p in wanted if p.exists() or p.is_symlink()]


def uninstall(
    paths: Paths,
    *,
    weights: bool = False,
    cache: bool = False,
    in_use: list[str] | None = None,
) -> UninstallReport:
    """Remove what was asked for. ``in_use`` lists processes still running from the env:
    then nothing at all is removed (not the weights or the cache either), so the
    refusal leaves everything as it was."""
    report = UninstallReport()
    if in_use:
        report.kept.append(
            f"{paths.envs_dir} (in use by {', '.join(in_use)}: stop the backend first; "
            "nothing was removed)"
        )
        return report
    lock = InstallLock(paths.install_lock)
    lock.acquire()  # raises InstallBusyError while an install runs
    try:
        # The pointer goes first: from here on nothing counts as installed.
        _remove(paths.active_pointer, report)
        _remove(paths.envs_dir, report)
        if weights:
            _remove(paths.hf_home, report)
            _remove(paths.checkpoints_dir, report)
        if cache:
            _remove(paths.uv_cache, report)
    finally:
        lock.release()
    return report
