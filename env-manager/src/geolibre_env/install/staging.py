"""The build folders under ``envs/``: which one a build resumes in, and removing
those no longer needed, with anything a killed install left running in them."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import psutil

from geolibre_env.install.journal import Journal
from geolibre_env.model_env import COMPLETE_MARKER, active_environment, new_env_name
from geolibre_env.paths import Paths
from geolibre_env.process_tree import kill_tree


def staging_root(paths: Paths, wanted: str) -> Path:
    """A build with the same plan to resume, or a new folder."""
    active = active_environment(paths)
    candidates = []
    if paths.envs_dir.is_dir():
        for root in paths.envs_dir.iterdir():
            if active is not None and root == active.root:
                continue
            if root.is_dir() and Journal.plan_hash_of(root) == wanted:
                candidates.append(root)
    if candidates:
        return max(candidates, key=lambda p: p.stat().st_mtime)
    root = paths.envs_dir / new_env_name()
    root.mkdir(parents=True)
    return root


def stop_strays(root: Path) -> None:
    """Kill anything still working in ``root`` (a uv orphaned by a killed install)."""
    for proc in processes_using(root):
        kill_tree(proc.pid)


def collect_garbage(paths: Paths, *, keep: Path) -> None:
    """Remove builds that are neither in use nor the one just switched in."""
    if not paths.envs_dir.is_dir():
        return
    for root in paths.envs_dir.iterdir():
        if root == keep or not root.is_dir():
            continue
        if not (root / COMPLETE_MARKER).exists():
            # Half-built: no backend runs from it; anything inside is a stray of a
            # killed install (we hold the install lock), which must not keep it alive.
            stop_strays(root)
        elif processes_using(root):
            continue  # a running backend still uses it; the next install removes it
        shutil.rmtree(root, ignore_errors=True)


def processes_using(root: Path) -> list[psutil.Process]:
    """Processes whose executable or command line lies inside ``root``."""
    marker = str(root)
    found = []
    for proc in psutil.process_iter(["exe", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            exe = proc.info.get("exe") or ""
            cmdline = proc.info.get("cmdline") or []
            if exe.startswith(marker) or any(marker in part for part in cmdline):
                found.append(proc)
    return found
