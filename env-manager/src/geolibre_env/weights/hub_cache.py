"""huggingface_hub's cache layout under ``<HF_HOME>/hub``, read from disk for the
status check (huggingface_hub itself runs only in the model environment's Python:
:mod:`geolibre_env.weights.hub_runner` writes the layout, and so does an offline
bundle's install, :mod:`geolibre_env.install.bundle.weights`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
# Etags and commits become file and folder names: nothing that could climb out.
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class RepoCache:
    """One model repository in huggingface_hub's cache layout under ``<HF_HOME>/hub``."""

    def __init__(self, hub_dir: Path, repo: str) -> None:
        self.root = hub_dir / f"models--{repo.replace('/', '--')}"

    def commit_for(self, revision: str) -> str | None:
        """The commit a branch points to locally (``refs/<revision>``), no network."""
        if COMMIT_SHA.match(revision):
            return revision
        try:
            commit = (self.root / "refs" / revision).read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return commit if SAFE_NAME.match(commit) else None

    def pointer(self, commit: str, filename: str) -> Path:
        return self.root / "snapshots" / commit / Path(*filename.split("/"))

    def find(
        self, commit: str | None, expected: Mapping[str, int | None]
    ) -> tuple[dict[str, int], list[str]]:
        """Which ``expected`` files the snapshot of ``commit`` has (with their size; a
        size given must match), and which it lacks."""
        found: dict[str, int] = {}
        missing: list[str] = []
        for name, size in expected.items():
            pointer = self.pointer(commit or "", name)
            if commit and pointer.is_file() and size in (None, pointer.stat().st_size):
                found[name] = pointer.stat().st_size
            else:
                missing.append(name)
        return found, missing
