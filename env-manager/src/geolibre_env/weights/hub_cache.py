"""huggingface_hub's cache layout under ``<HF_HOME>/hub``: read for the status
check and the offline bundle, written only when a bundle is installed (a
download lets huggingface_hub write it, in :mod:`geolibre_env.weights.hub_runner`).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import Literal

from geolibre_env.errors import WeightsError

RepoType = Literal["model", "dataset"]
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
# Etags and commits become file and folder names: nothing that could climb out.
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def check_repo_filename(name: str) -> str:
    """``name`` if it is a plain relative path inside a repository, else WeightsError."""
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or "\\" in name or ".." in parts or ":" in name:
        raise WeightsError(f"The Hub listed a file name we will not write to disk: {name!r}.")
    return name


class RepoCache:
    """One repository in huggingface_hub's cache layout under ``<HF_HOME>/hub``."""

    def __init__(self, hub_dir: Path, repo: str, repo_type: RepoType = "model") -> None:
        self.root = hub_dir / f"{repo_type}s--{repo.replace('/', '--')}"

    def commit_for(self, revision: str) -> str | None:
        """The commit a branch points to locally (``refs/<revision>``), no network."""
        if COMMIT_SHA.match(revision):
            return revision
        try:
            commit = (self.root / "refs" / revision).read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return commit if SAFE_NAME.match(commit) else None

    def write_ref(self, revision: str, commit: str) -> None:
        if revision == commit:
            return
        ref = self.root / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        tmp = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
        tmp.write_text(commit, encoding="utf-8")
        os.replace(tmp, ref)

    def blob(self, etag: str) -> Path:
        return self.root / "blobs" / etag

    def pointer(self, commit: str, filename: str) -> Path:
        return self.root / "snapshots" / commit / Path(*filename.split("/"))

    def link(self, blob: Path, pointer: Path, *, new_blob: bool) -> None:
        """A relative symlink pointer -> blob; where symlinks are refused, move or copy
        the blob as huggingface_hub does (move a new blob: no 3 GB duplicate)."""
        pointer.parent.mkdir(parents=True, exist_ok=True)
        if pointer.is_symlink() or pointer.exists():
            pointer.unlink()
        try:
            os.symlink(os.path.relpath(blob, pointer.parent), pointer)
            return
        except (OSError, NotImplementedError):
            pass
        if new_blob:
            shutil.move(blob, pointer)
        else:
            shutil.copyfile(blob, pointer)
