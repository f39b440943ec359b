"""SAM 3's weights in an offline bundle: read out of huggingface_hub's cache layout
when exporting, put back into it when installing - with no network at all.

The bundle keeps each file's repository name, its cache blob name (the Hub's
etag: the sha256 for LFS files, the git blob id for small ones) and the commit,
so the installed cache is the one ``fetch_weights`` would have written and
samgeo-api finds it with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from geolibre_env.errors import WeightsError
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec, Sam3Implementation
from geolibre_env.weights.hub_cache import COMMIT_SHA, SAFE_NAME, pointer, record_fetched, repo_root
from geolibre_env.weights.sam3 import WeightsStatus, vocab_path, weights_status


@dataclass(frozen=True)
class BundledWeightFile:
    name: str  # the path inside the repository
    etag: str  # the blob's name in the cache layout
    size: int
    source: Path  # where its bytes are now

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "etag": self.etag, "size": self.size}


@dataclass(frozen=True)
class BundledWeights:
    repo: str
    revision: str
    commit: str
    backend: Sam3Implementation
    files: tuple[BundledWeightFile, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "revision": self.revision,
            "commit": self.commit,
            "backend": self.backend,
            "files": [f.to_dict() for f in self.files],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, folder: Path) -> BundledWeights:
        """From a bundle manifest; every name is checked before it can become a path."""
        commit = str(data["commit"])
        if not (SAFE_NAME.match(commit) or COMMIT_SHA.match(commit)):
            raise ValueError(f"unusable commit id {commit!r}")
        files = []
        for item in data["files"]:
            name, etag = check_repo_filename(str(item["name"])), str(item["etag"])
            if not SAFE_NAME.match(etag):
                raise ValueError(f"unusable blob name {etag!r}")
            files.append(BundledWeightFile(name, etag, int(item["size"]), folder / name))
        backend = str(data["backend"])
        if backend not in ("meta", "transformers"):
            raise ValueError(f"unknown backend {backend!r}")
        return cls(
            repo=str(data["repo"]),
            revision=str(data.get("revision") or "main"),
            commit=commit,
            backend=backend,  # type: ignore[arg-type]
            files=tuple(files),
        )


def cached_weights(
    settings: EnvSettings, spec: ModelEnvSpec, backend: Sam3Implementation
) -> BundledWeights:
    """The files ``fetch_weights`` laid out for ``backend``, read from the cache."""
    status = weights_status(settings, spec, backend=backend, site_packages=None)
    if not status.present or status.commit is None or status.route != "hub":
        raise WeightsError(
            f"The SAM 3 weights for the {backend} backend are not complete in "
            f"{settings.paths.hf_home} ({', '.join(status.missing) or 'unknown commit'}).",
            hint="Run the export again: it fetches what is missing first.",
        )
    files = []
    for item in status.files:
        link = pointer(settings.paths.hf_home, spec.weights.repo, status.commit, item.name)
        if link.is_symlink():
            etag, source = Path(os.readlink(link)).name, link.resolve()
        else:  # no symlinks here (Windows without developer mode): the file itself
            etag, source = _sha256(link), link
        files.append(BundledWeightFile(item.name, etag, source.stat().st_size, source))
    return BundledWeights(
        repo=spec.weights.repo,
        revision=spec.weights.revision,
        commit=status.commit,
        backend=backend,
        files=tuple(files),
    )


def place_weights(
    settings: EnvSettings,
    spec: ModelEnvSpec,
    weights: BundledWeights,
    *,
    vocab: Path | None,
    site_packages: Path | None,
) -> WeightsStatus:
    """Move verified bundle files into the cache layout (and the vocabulary into the
    environment); the refs file is written last, as ``fetch_weights`` does."""
    if weights.repo != spec.weights.repo:
        raise WeightsError(
            f"The bundle carries weights from {weights.repo}, but this installation needs "
            f"{spec.weights.repo}.",
            hint="Export a new bundle with this version of geolibre-ml.",
        )
    hf_home = settings.paths.hf_home
    try:
        for item in weights.files:
            blob = repo_root(hf_home, weights.repo) / "blobs" / item.etag
            blob.parent.mkdir(parents=True, exist_ok=True)
            new_blob = not (blob.is_file() and blob.stat().st_size == item.size)
            if new_blob:
                shutil.move(item.source, blob)
            _link(
                blob, pointer(hf_home, weights.repo, weights.commit, item.name), new_blob=new_blob
            )
        target = vocab_path(spec, site_packages)
        if vocab is not None and target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            shutil.copyfile(vocab, tmp)
            os.replace(tmp, target)
        if weights.revision != weights.commit:  # last, as huggingface_hub's own download
            ref = repo_root(hf_home, weights.repo) / "refs" / weights.revision
            ref.parent.mkdir(parents=True, exist_ok=True)
            tmp = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
            tmp.write_text(weights.commit, encoding="utf-8")
            os.replace(tmp, ref)
        sizes = {item.name: item.size for item in weights.files}
        record_fetched(hf_home, weights.backend, weights.repo, weights.commit, sizes)
    except OSError as exc:
        raise WeightsError(
            f"Could not put the SAM 3 weights into {settings.paths.hf_home}: "
            f"{exc.strerror or exc}.",
            hint="Check free disk space and that the folder is writable, then run the "
            "install again.",
        ) from None
    return weights_status(
        settings, spec, backend=weights.backend, site_packages=site_packages, checkpoint=None
    )


def check_repo_filename(name: str) -> str:
    """``name`` if it is a plain relative path inside a repository, else ValueError."""
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or "\\" in name or ".." in parts or ":" in name:
        raise ValueError(f"a file name we will not write to disk: {name!r}")
    return name


def _link(blob: Path, pointer: Path, *, new_blob: bool) -> None:
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


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
