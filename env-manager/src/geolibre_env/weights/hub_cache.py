"""What a model needs from the Hub, and whether huggingface_hub's cache layout under
``<HF_HOME>/hub`` has it, read from disk (huggingface_hub itself runs only in the
model environment's Python: :mod:`geolibre_env.weights.hub_runner` writes the layout,
and so does an offline bundle's install, :mod:`geolibre_env.install.bundle.weights`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geolibre_env.model_env import read_json, write_json_atomic

COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
# Etags and commits become file and folder names: nothing that could climb out.
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
# Which files each model needs, as last fetched (a listing's set cannot be known
# offline otherwise), by RepoFiles.key.
MANIFEST_NAME = "geolibre-weights.json"


@dataclass(frozen=True)
class RepoFiles:
    """What one model needs from one repository: ``files``, or (None) the repository's
    listing less ``exclude``. ``key`` names it in the manifest."""

    key: str
    repo: str
    revision: str
    files: tuple[str, ...] | None
    exclude: tuple[str, ...] = ()

    def runner_item(self) -> dict[str, Any]:
        """The item :mod:`geolibre_env.weights.hub_runner` fetches."""
        files = None if self.files is None else list(self.files)
        return {"repo": self.repo, "revision": self.revision, "files": files,
                "exclude": list(self.exclude)}  # fmt: skip


def repo_root(hf_home: Path, repo: str) -> Path:
    return hf_home / "hub" / f"models--{repo.replace('/', '--')}"


def pointer(hf_home: Path, repo: str, commit: str, filename: str) -> Path:
    """A file of the snapshot of ``commit`` (a link to its blob)."""
    return repo_root(hf_home, repo) / "snapshots" / commit / Path(*filename.split("/"))


def cached(hf_home: Path, want: RepoFiles) -> tuple[str | None, dict[str, int], list[str]]:
    """The commit ``want.revision`` names locally, the files of its snapshot (with their
    size; a size the manifest recorded must match) and the ones it lacks. No network."""
    commit: str | None = want.revision
    if not COMMIT_SHA.match(want.revision):
        try:
            commit = (
                (repo_root(hf_home, want.repo) / "refs" / want.revision).read_text("utf-8").strip()
            )
        except OSError:
            commit = None
    commit = commit if commit and SAFE_NAME.match(commit) else None
    entry = (read_json(hf_home / MANIFEST_NAME) or {}).get(want.key, {})
    if commit and entry.get("repo") == want.repo and entry.get("commit") == commit:
        expected = {str(name): int(size) for name, size in entry.get("files", {}).items()}
    else:
        expected = dict.fromkeys(want.files or ())
    found: dict[str, int] = {}
    missing: list[str] = []
    for name, size in expected.items():
        path = pointer(hf_home, want.repo, commit or "-", name)
        if commit and path.is_file() and size in (None, path.stat().st_size):
            found[name] = path.stat().st_size
        else:
            missing.append(name)
    return commit, found, missing


def record_fetched(hf_home: Path, key: str, repo: str, commit: str, files: dict[str, int]) -> None:
    """Remember which files (and sizes) ``key`` needs at ``commit``: a listing's set
    comes from the Hub, so an offline status check needs this record."""
    data = read_json(hf_home / MANIFEST_NAME) or {}
    data[key] = {"repo": repo, "commit": commit, "files": files}
    write_json_atomic(hf_home / MANIFEST_NAME, data)
