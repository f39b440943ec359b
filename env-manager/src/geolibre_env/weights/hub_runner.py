"""Fetch Hub files with huggingface_hub itself, run by path with the model
environment's Python (stdlib + huggingface_hub only: it must not import us).

Reads a JSON request on stdin, writes JSON lines on stdout (``plan``,
``start``, ``progress``, ``done`` or ``error``). The parent (geolibre_env.weights.sam3)
builds the environment: ``HF_HOME``, ``HF_ENDPOINT``, the token (``HF_TOKEN``),
proxies, ``SSL_CERT_FILE`` and ``HF_HUB_DISABLE_XET``.

Plain-HTTP files go to ``blobs/<etag>.incomplete`` under huggingface_hub's own
lock, so a run that is killed leaves bytes the next run resumes with a Range
request (huggingface_hub's own temporary files are per process and start
over); the sha256 of an LFS file is checked before it becomes a blob (the
library checks the size only). huggingface_hub then links the snapshot, or
downloads the file itself when it is stored with Xet.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from huggingface_hub import HfApi, constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.file_download import http_get, is_xet_available, repo_folder_name
from huggingface_hub.utils import WeakFileLock, build_hf_headers
from huggingface_hub.utils import tqdm as hf_tqdm

PROGRESS_INTERVAL_S = 0.1
DISK_MARGIN_BYTES = 100_000_000
HASH_BLOCK_BYTES = 1 << 20
CHUNK_BYTES = 1 << 16
LFS_SHA256_LEN = 64
LINK_RENEWALS = 2  # signed CDN links expire; a resume may need a fresh one
_TOKEN = os.environ.get("HF_TOKEN", "")


class Failure(Exception):
    """A failure this runner diagnosed itself (integrity, disk)."""

    def __init__(self, kind: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.kind, self.extra = kind, extra


def emit(event: str, **data: Any) -> None:
    text = json.dumps({"event": event, **data}, separators=(",", ":"), default=str)
    if _TOKEN:
        text = text.replace(_TOKEN, "***")
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class Progress(hf_tqdm):  # type: ignore[misc]
    """huggingface_hub's progress bars as JSON lines: the file's absolute position,
    so resumed bytes (``initial``) count once and a restart (negative update) too."""

    current = ""  # the file being fetched: Xet bars are named by hash, not file

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sink = kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 - closed with the bar
        self._position = int(kwargs.get("initial") or 0)
        self._last = 0.0
        super().__init__(*args, **kwargs)

    def update(self, n: float | None = 1) -> bool | None:
        self._position += int(n or 0)
        now = time.monotonic()
        if now - self._last >= PROGRESS_INTERVAL_S:
            self._last = now
            emit("progress", file=Progress.current, done=self._position)
        return super().update(n)

    def close(self) -> None:
        if not self._sink.closed:
            emit("progress", file=Progress.current, done=self._position)
            super().close()
            self._sink.close()


def listing(repo: str, repo_type: str, revision: str) -> tuple[str, list[str]]:
    info = HfApi().repo_info(repo, repo_type=repo_type, revision=revision)
    return str(info.sha), [s.rfilename for s in info.siblings or []]


def metadata(repo: str, repo_type: str, revision: str, name: str) -> Any:
    url = hf_hub_url(repo, name, repo_type=repo_type, revision=revision)
    return get_hf_file_metadata(url)


def hub_headers(location: str) -> dict[str, str]:
    """huggingface_hub's headers; the token only for the Hub's own hosts, never for a
    signed CDN link (as huggingface_hub itself does)."""
    headers = build_hf_headers()
    host = urlsplit(location).hostname or ""
    if host != urlsplit(constants.ENDPOINT).hostname and host not in constants.HF_URL_HOSTS:
        headers.pop("authorization", None)
    return headers


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def fetch_blob(storage: Path, locks: Path, job: dict[str, Any]) -> None:
    """Download one plain-HTTP file to its blob, resumably, checked before it is moved."""
    meta, name = job["meta"], job["name"]
    blob = storage / "blobs" / meta.etag
    partial = blob.with_name(blob.name + ".incomplete")
    blob.parent.mkdir(parents=True, exist_ok=True)
    locks.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(locks / f"{meta.etag}.lock"):
        if blob.exists():
            return
        _unlink_leftovers(blob)
        if partial.exists() and partial.stat().st_size > meta.size:
            partial.unlink()
        for attempt in range(LINK_RENEWALS + 1):
            resumed = partial.stat().st_size if partial.exists() else 0
            emit("start", file=name, size=meta.size, resumed=resumed)
            try:
                with partial.open("ab") as handle:
                    http_get(meta.location, handle, resume_size=resumed, headers=job["headers"],
                             expected_size=meta.size, displayed_filename=name,
                             tqdm_class=Progress)  # fmt: skip
                break
            except Exception as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                cdn = urlsplit(meta.location).netloc != urlsplit(constants.ENDPOINT).netloc
                if status not in (401, 403) or not cdn or attempt == LINK_RENEWALS:
                    raise
                meta = metadata(job["repo"], job["repo_type"], job["commit"], name)
                job["headers"] = hub_headers(meta.location)
        if len(meta.etag) == LFS_SHA256_LEN and (actual := sha256_of(partial)) != meta.etag:
            partial.unlink()
            raise Failure("integrity", "checksum mismatch", file=name, repo=job["repo"],
                          expected=meta.etag, actual=actual)  # fmt: skip
        os.replace(partial, blob)


def drop_leftovers(storage: Path, locks: Path, etag: str) -> None:
    """Remove huggingface_hub's temporary files for ``etag`` left by a killed run (under
    its lock: nobody is writing them now)."""
    locks.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(locks / f"{etag}.lock"):
        _unlink_leftovers(storage / "blobs" / etag)


def _unlink_leftovers(blob: Path) -> None:
    for leftover in blob.parent.glob(f"{blob.name}.*.incomplete"):
        leftover.unlink(missing_ok=True)


def run(request: dict[str, Any]) -> dict[str, Any]:
    cache = Path(request["cache_dir"])
    repo, repo_type = request["repo"], request.get("repo_type", "model")
    revision, files = request["revision"], request.get("files")
    commit = None
    if files is None:  # everything but the excluded patterns (the transformers set)
        commit, names = listing(repo, repo_type, revision)
        exclude = request.get("exclude", [])
        files = [n for n in names if not any(fnmatch.fnmatch(n, p) for p in exclude)]
    storage = cache / repo_folder_name(repo_id=repo, repo_type=repo_type)
    jobs = []
    for name in files:
        Progress.current = name  # an error names the file it was about
        # Pinned to the first answer's commit: one consistent snapshot even if main moves.
        meta = metadata(repo, repo_type, commit or revision, name)
        commit = commit or meta.commit_hash
        jobs.append({"name": name, "meta": meta, "repo": repo, "repo_type": repo_type,
                     "commit": commit, "headers": hub_headers(meta.location)})  # fmt: skip
    missing = [j for j in jobs if not (storage / "blobs" / j["meta"].etag).exists()]
    need = sum(j["meta"].size - _partial_size(storage, j) for j in missing)
    free = shutil.disk_usage(_existing(cache)).free
    if need + DISK_MARGIN_BYTES > free:
        raise Failure("disk", "not enough disk", needed=need, free=free, folder=str(cache))
    emit("plan", total=sum(j["meta"].size for j in jobs), commit=commit)
    for job in jobs:
        meta, name = job["meta"], job["name"]
        Progress.current = name
        locks = cache / ".locks" / storage.name
        if job in missing and (meta.xet_file_data is None or not is_xet_available()):
            fetch_blob(storage, locks, job)  # plain HTTP (also Xet files with Xet off)
        elif job in missing:
            # hf-xet writes its own per-process file: a killed run's is of no use.
            drop_leftovers(storage, locks, meta.etag)
            emit("start", file=name, size=meta.size, resumed=0)
        path = hf_hub_download(repo, name, repo_type=repo_type, revision=commit,
                               cache_dir=cache, tqdm_class=Progress)  # fmt: skip
        emit("file", file=name, size=meta.size)
        if request.get("copy_to"):  # samgeo reads its vocabulary from its own package
            target = Path(request["copy_to"])
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
    if commit and revision != commit:
        # Last: the branch names the commit only once its snapshot is complete.
        ref = storage / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit, encoding="utf-8")
    return {"commit": commit, "files": {j["name"]: j["meta"].size for j in jobs}}


def _partial_size(storage: Path, job: dict[str, Any]) -> int:
    partial = storage / "blobs" / f"{job['meta'].etag}.incomplete"
    return partial.stat().st_size if partial.exists() else 0


def _existing(path: Path) -> Path:
    return next(p for p in (path, *path.parents) if p.exists())


def describe(exc: BaseException) -> dict[str, Any]:
    """What the parent needs to choose a sentence: class names, HTTP status, host."""
    causes = _walk(exc)
    chain = [[type(item).__name__, str(item)[:300]] for item in causes[:8]]
    response = next((getattr(e, "response", None) for e in causes
                     if getattr(e, "response", None) is not None), None)  # fmt: skip
    info: dict[str, Any] = {"type": type(exc).__name__, "chain": chain}
    if isinstance(exc, Failure):
        info.update(kind=exc.kind, **exc.extra)
    if isinstance(exc, OSError) and exc.errno is not None:
        info["strerror"] = exc.strerror  # the disk, not the network
    if response is not None:
        info["status"] = response.status_code
        info["code"] = response.headers.get("X-Error-Code", "")
        info["server"] = response.headers.get("X-Error-Message", "")[:300]
        info["host"] = urlsplit(str(response.request.url)).netloc if response.request else ""
    return info


def _walk(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def main() -> int:
    request = json.loads(sys.stdin.read())
    # huggingface_hub reads 10 MB per chunk and writes (and reports) whole chunks: a
    # smaller chunk keeps progress live and loses less when the connection drops.
    constants.DOWNLOAD_CHUNK_SIZE = CHUNK_BYTES
    results = []
    try:
        for item in request["items"]:
            results.append(run({"cache_dir": request["cache_dir"], **item}))
    except Exception as exc:  # every failure becomes one line the parent explains
        emit("error", what=Progress.current, item=len(results), **describe(exc))
        if os.environ.get("GEOLIBRE_ML_RUNNER_DEBUG"):
            traceback.print_exc()
        return 1
    emit("done", results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
