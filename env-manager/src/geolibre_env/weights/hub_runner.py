"""Fetch Hub files with huggingface_hub itself, run by path with the model
environment's Python (stdlib + huggingface_hub only: it must not import us).

Reads ``{"cache_dir", "items": [{repo, repo_type, revision, files, exclude,
copy_to}]}`` on stdin (``files`` None: the repository's listing less ``exclude``)
and writes JSON lines: ``plan`` (total bytes), ``progress`` (bytes over the whole
fetch and within the file), then ``done`` (each item's commit and file sizes) or
one ``error``. The parent (geolibre_env.weights.hub_fetch) sets HF_HOME,
HF_ENDPOINT, HF_TOKEN, the proxies, SSL_CERT_FILE and HF_HUB_DISABLE_XET.
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
CHUNK_BYTES = 1 << 16
LFS_SHA256_LEN = 64
LINK_RENEWALS = 2  # signed CDN links expire; a resume may need a fresh one
_TOKEN = os.environ.get("HF_TOKEN", "")


class Failure(Exception):
    """A failure this runner diagnosed itself (integrity, disk): its data for the parent."""


def emit(event: str, **data: Any) -> None:
    text = json.dumps({"event": event, **data}, separators=(",", ":"), default=str)
    sys.stdout.write((text.replace(_TOKEN, "***") if _TOKEN else text) + "\n")
    sys.stdout.flush()


class Progress(hf_tqdm):  # type: ignore[misc]
    """huggingface_hub's progress bars as JSON lines: the file's absolute position,
    so resumed bytes (``initial``) count once and a restart (negative update) too."""

    file, size, base = "", 0, 0  # the file being fetched (Xet bars are named by hash)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sink = kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 - closed with the bar
        self._position, self._last = int(kwargs.get("initial") or 0), 0.0
        super().__init__(*args, **kwargs)

    @staticmethod
    def report(done: int) -> None:
        emit("progress", file=Progress.file, file_done=done, file_total=Progress.size,
             done=Progress.base + done)  # fmt: skip

    def update(self, n: float | None = 1) -> bool | None:
        self._position += int(n or 0)
        if time.monotonic() - self._last >= PROGRESS_INTERVAL_S:
            self._last = time.monotonic()
            Progress.report(self._position)
        return super().update(n)

    def close(self) -> None:
        if not self._sink.closed:
            Progress.report(self._position)
            super().close()
            self._sink.close()


def metadata(repo: str, repo_type: str, revision: str, name: str) -> Any:
    return get_hf_file_metadata(hf_hub_url(repo, name, repo_type=repo_type, revision=revision))


def hub_headers(location: str) -> dict[str, str]:
    """huggingface_hub's headers; the token only for the Hub's own hosts, never for a
    signed CDN link (as huggingface_hub itself does)."""
    headers = build_hf_headers()
    host = urlsplit(location).hostname or ""
    if host != urlsplit(constants.ENDPOINT).hostname and host not in constants.HF_URL_HOSTS:
        headers.pop("authorization", None)
    return headers


def plan(cache: Path, item: dict[str, Any]) -> None:
    """Each file of ``item`` with its metadata (item["jobs"]), pinned to one commit."""
    repo, kind, revision = item["repo"], item.setdefault("repo_type", "model"), item["revision"]
    files, commit = item.get("files"), None
    if files is None:  # the listing less the excluded patterns (the transformers set)
        info = HfApi().repo_info(repo, repo_type=kind, revision=revision)
        commit, exclude = str(info.sha), item.get("exclude", [])
        names = [s.rfilename for s in info.siblings or []]
        files = [n for n in names if not any(fnmatch.fnmatch(n, p) for p in exclude)]
    item["storage"] = cache / repo_folder_name(repo_id=repo, repo_type=kind)
    item["jobs"] = []
    for name in files:
        Progress.file = name  # an error names the file it was about
        # Pinned to the first answer's commit: one consistent snapshot even if main moves.
        meta = metadata(repo, kind, commit or revision, name)
        commit = item["commit"] = commit or meta.commit_hash
        blob = item["storage"] / "blobs" / meta.etag
        item["jobs"].append({"name": name, "meta": meta, "blob": blob,
                             "partial": blob.with_name(blob.name + ".incomplete")})  # fmt: skip


def lock(cache: Path, item: dict[str, Any], etag: str) -> WeakFileLock:
    """huggingface_hub's own lock for a blob: one writer, whichever of us or it."""
    locks = cache / ".locks" / item["storage"].name
    locks.mkdir(parents=True, exist_ok=True)
    return WeakFileLock(locks / f"{etag}.lock")


def fetch_blob(cache: Path, item: dict[str, Any], job: dict[str, Any]) -> None:
    """Download one plain-HTTP file to its blob, resumably, checked before it is moved.

    Why not hf_hub_download's own transfer: huggingface_hub 1.33 (the spec's pin)
    writes to a per-process ``<etag>.<uuid>.incomplete`` (``_download_to_tmp_and_move``)
    that no later run resumes, and checks sizes only. So a killed run leaves our
    ``<etag>.incomplete`` (under its lock) that the next run resumes with a Range
    request, and an LFS file's sha256 is checked before it becomes a blob.
    """
    meta, name, blob, partial = job["meta"], job["name"], job["blob"], job["partial"]
    blob.parent.mkdir(parents=True, exist_ok=True)
    with lock(cache, item, meta.etag):
        if blob.exists():
            return
        drop_leftovers(blob)
        if partial.exists() and partial.stat().st_size > meta.size:
            partial.unlink()
        for attempt in range(LINK_RENEWALS + 1):
            resumed = size_of(partial)
            Progress.report(resumed)
            try:
                with partial.open("ab") as handle:
                    http_get(meta.location, handle, resume_size=resumed, expected_size=meta.size,
                             headers=hub_headers(meta.location), displayed_filename=name,
                             tqdm_class=Progress)  # fmt: skip
                break
            except Exception as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                cdn = urlsplit(meta.location).netloc != urlsplit(constants.ENDPOINT).netloc
                if status not in (401, 403) or not cdn or attempt == LINK_RENEWALS:
                    raise
                meta = metadata(item["repo"], item["repo_type"], item["commit"], name)
        if len(meta.etag) == LFS_SHA256_LEN and (actual := sha256_of(partial)) != meta.etag:
            partial.unlink()
            raise Failure({"kind": "integrity", "expected": meta.etag, "actual": actual})
        os.replace(partial, blob)


def drop_leftovers(blob: Path) -> None:
    """huggingface_hub's per-process temporary files of a killed run (of no use)."""
    for leftover in blob.parent.glob(f"{blob.name}.*.incomplete"):
        leftover.unlink(missing_ok=True)


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def size_of(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def run(request: dict[str, Any]) -> list[dict[str, Any]]:
    cache, items = Path(request["cache_dir"]), request["items"]
    for item in items:
        plan(cache, item)
    jobs = [job for item in items for job in item["jobs"]]
    missing = [job for job in jobs if not job["blob"].exists()]
    need = sum(job["meta"].size - size_of(job["partial"]) for job in missing)
    free = shutil.disk_usage(next(p for p in (cache, *cache.parents) if p.exists())).free
    if need + DISK_MARGIN_BYTES > free:
        raise Failure({"kind": "disk", "needed": need, "free": free, "folder": str(cache)})
    emit("plan", total=sum(job["meta"].size for job in jobs))
    for item in items:
        for job in item["jobs"]:
            meta = job["meta"]
            Progress.file, Progress.size = job["name"], meta.size
            if job in missing and (meta.xet_file_data is None or not is_xet_available()):
                fetch_blob(cache, item, job)  # plain HTTP (also Xet files with Xet off)
            elif job in missing:  # hf-xet writes its own per-process file
                with lock(cache, item, meta.etag):
                    drop_leftovers(job["blob"])
                Progress.report(0)
            path = hf_hub_download(item["repo"], job["name"], repo_type=item["repo_type"],
                                   revision=item["commit"], cache_dir=cache,
                                   tqdm_class=Progress)  # fmt: skip
            Progress.base += meta.size
            if item.get("copy_to"):  # samgeo reads its vocabulary from its own package
                target = Path(item["copy_to"])
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, tmp := target.with_name(f".{target.name}.{os.getpid()}"))
                os.replace(tmp, target)
        if item.get("commit") and item["revision"] != item["commit"]:
            # Last: the branch names the commit only once its snapshot is complete.
            ref = item["storage"] / "refs" / item["revision"]
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(item["commit"], encoding="utf-8")
    return [
        {"commit": item.get("commit"), "files": {j["name"]: j["meta"].size for j in item["jobs"]}}
        for item in items
    ]


def describe(exc: BaseException) -> dict[str, Any]:
    """What the parent needs to choose a sentence: class names, HTTP status, host."""
    causes: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in causes:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    info: dict[str, Any] = {"chain": [[type(e).__name__, str(e)[:300]] for e in causes[:8]]}
    if isinstance(exc, Failure):
        info.update(exc.args[0])
    if isinstance(exc, OSError) and exc.errno is not None:
        info["strerror"] = exc.strerror  # the disk, not the network
    response = next((r for e in causes if (r := getattr(e, "response", None)) is not None), None)
    if response is not None:
        headers, request = response.headers, response.request
        info.update(status=response.status_code, code=headers.get("X-Error-Code", ""),
                    server=headers.get("X-Error-Message", "")[:300],
                    host=urlsplit(str(request.url)).netloc if request else "")  # fmt: skip
    return info


def main() -> int:
    request = json.loads(sys.stdin.read())
    # huggingface_hub reads 10 MB per chunk and writes (and reports) whole chunks: a
    # smaller chunk keeps progress live and loses less when the connection drops.
    constants.DOWNLOAD_CHUNK_SIZE = CHUNK_BYTES
    try:
        results = run(request)
    except Exception as exc:  # every failure becomes one line the parent explains
        emit("error", what=Progress.file, **describe(exc))
        if os.environ.get("GEOLIBRE_ML_RUNNER_DEBUG"):
            traceback.print_exc()
        return 1
    emit("done", results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
