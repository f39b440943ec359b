"""Fetch Hub files with huggingface_hub itself, run by path with the model
environment's Python (stdlib + huggingface_hub only: it must not import us).

Reads ``{"cache_dir", "proxy": {netloc, auth_reason, setting}, "items": [{repo,
repo_type, revision, files, exclude, copy_to}]}`` on stdin (``files`` None: the
repository's listing less ``exclude``) and writes JSON lines: ``plan`` (total
bytes), ``progress`` (bytes over the whole fetch and within the file), then
``done`` (each item's commit and file sizes) or one ``error``: the exception class
for the parent, the sentence and the next step. The parent
(geolibre_env.weights.hub_fetch) sets HF_HOME, HF_ENDPOINT, HF_TOKEN, the proxies,
SSL_CERT_FILE and HF_HUB_DISABLE_XET.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import sys
import time
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
PUBLIC_HUB = "https://huggingface.co"
TOKENS_PAGE = f"{PUBLIC_HUB}/settings/tokens"
RESUME_HINT = "Run it again: it continues from the bytes already received."
OFFLINE_HINT = (
    "Connect to the internet, set HF_ENDPOINT to a mirror, "
    "or use a local checkpoint (--checkpoint / SAM3_CHECKPOINT_PATH)."
)
PROXY_HINT = (
    "Check the proxy setting ({setting}); a proxy that asks for a password takes it in the "
    "URL (http://user:password@host:port)."
)
TLS_HINT = (
    "If a corporate proxy inspects TLS, set GEOLIBRE_ML_CA_BUNDLE to its root certificate "
    "(verification stays on); if only the Xet transfers fail, also set HF_HUB_DISABLE_XET=1; "
    "or use a local checkpoint (--checkpoint / SAM3_CHECKPOINT_PATH)."
)
REFUSED = "The Hugging Face Hub refused access to {repo} (HTTP "
# Each case: the parent's exception class, the sentence and the next step, filled in
# from the case's fields.
SENTENCES = {
    "401": ("gated", REFUSED + "401: no token was given).",
            "{repo} is gated: accept its licence on the Hub ({page}), create a read token "
            "({tokens}), then retry with the token (--token or HF_TOKEN)."),
    "401-token": ("gated", REFUSED + "401: the token was rejected).",
                  "Check the token is current ({tokens}), accept the licence for {repo} on the "
                  "Hub ({page}), then retry."),
    "403": ("gated", REFUSED + "403).", "Accept the licence for {repo} on the Hub ({page}), "
            "make sure your token can read gated repositories, then retry."),
    "integrity": ("integrity", "{what} from {repo} did not match the Hub's checksum (sha256 "
                  "{actual:.12}… instead of {expected:.12}…), so it was discarded.",
                  "Run the download again; if it fails the same way, a proxy or the mirror "
                  "in HF_ENDPOINT is altering the file."),
    "disk": ("weights", "Not enough free disk for the SAM 3 weights: {needed:.1f} GB needed in "
             "{folder}, {free:.1f} GB free.",
             "Free some space (or move GEOLIBRE_ML_HOME to a larger drive), then retry."),
    "write": ("weights", "Could not write {what}: {strerror}.",
              "Check free disk space and that the folder is writable, then retry."),
    "missing": ("weights", "The Hub at {host} has no {missing}.",
                "{check} HF_ENDPOINT and the [weights] section of the model-env spec."),
    "429": ("weights", "The Hugging Face Hub is limiting how fast we may download (HTTP 429).",
            "Wait a few minutes and retry; a Hub token raises the limit."),
    "http": ("weights", "The Hugging Face Hub answered HTTP {status} for {repo} ({what}).",
             "The Hub may be having trouble: retry in a few minutes."),
    "offline": ("offline", "Could not reach the Hugging Face Hub at {host}: {reason}.", "{hint}"),
}  # fmt: skip
# A broken connection, first match wins: kind, exception class names (class names:
# huggingface_hub 1.x raises httpx's errors, 2.x httpx2's), words in the text, the
# reason shown, the next step.
TRANSPORT = (
    ("dns", (), ("name or service not known", "gaierror", "getaddrinfo"),
     "the name could not be resolved (no DNS answer)", OFFLINE_HINT),
    ("refused", (), ("refused",), "the connection was refused", OFFLINE_HINT),
    ("timeout", ("ConnectTimeout", "ReadTimeout", "TimeoutException"), ("timed out",),
     "the connection timed out", OFFLINE_HINT),
    ("dropped", ("RemoteProtocolError", "ReadError"), ("consistency check failed",),
     "the connection was cut off", RESUME_HINT),
)  # fmt: skip


class Failure(Exception):
    """A failure this runner diagnosed itself: its case and the fields of its sentence."""

    def __init__(self, case: str, **fields: Any) -> None:
        super().__init__(case)
        self.case, self.fields = case, fields


def emit(event: str, **data: Any) -> None:
    text = json.dumps({"event": event, **data}, separators=(",", ":"), default=str)
    sys.stdout.write((text.replace(_TOKEN, "***") if _TOKEN else text) + "\n")
    sys.stdout.flush()


class Progress(hf_tqdm):  # type: ignore[misc]
    """huggingface_hub's progress bars as JSON lines: the file's absolute position,
    so resumed bytes (``initial``) count once and a restart (negative update) too."""

    # The file being fetched (Xet bars are named by hash), also named by an error.
    repo, file, size, base = "", "", 0, 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sink = kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 - closed with the bar
        self._position, self._last = int(kwargs.get("initial") or 0), 0.0
        super().__init__(*args, **kwargs)

    @staticmethod
    def report(done: int) -> None:
        emit("progress", file=Progress.file, file_done=done, file_total=Progress.size,
             done=Progress.base + done)  # fmt: skip

    def update(self, n: float | None = 1) -> bool | None:
        # huggingface_hub counts a chunk before it writes it: report what is on disk.
        if time.monotonic() - self._last >= PROGRESS_INTERVAL_S:
            self._last = time.monotonic()
            Progress.report(self._position)
        self._position += int(n or 0)
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
    Progress.repo = repo
    if files is None:  # the listing less the excluded patterns (the transformers set)
        info = HfApi().repo_info(repo, repo_type=kind, revision=revision)
        commit, exclude = str(info.sha), item.get("exclude", [])
        names = [s.rfilename for s in info.siblings or []]
        files = [n for n in names if not any(fnmatch.fnmatch(n, p) for p in exclude)]
    item["storage"] = cache / repo_folder_name(repo_id=repo, repo_type=kind)
    item["jobs"] = []
    for name in files:
        Progress.file = name
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
            raise Failure("integrity", expected=meta.etag, actual=actual)
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
        raise Failure("disk", needed=need / 1e9, free=free / 1e9, folder=str(cache))
    emit("plan", total=sum(job["meta"].size for job in jobs))
    for item in items:
        Progress.repo = item["repo"]
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


def explain(exc: BaseException, proxy: dict[str, Any]) -> dict[str, Any]:
    """The ``error`` line for ``exc``: the parent's exception class, sentence, next step."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    response = next((r for e in chain if (r := getattr(e, "response", None)) is not None), None)
    status = response.status_code if response is not None else None
    code = response.headers.get("X-Error-Code", "") if response is not None else ""
    repo, what = Progress.repo, Progress.file
    fields: dict[str, Any] = {
        "repo": repo, "what": what or "the weights", "status": status, "check": "Check",
        "host": host_of(constants.ENDPOINT), "page": f"{PUBLIC_HUB}/{repo}",
        "tokens": TOKENS_PAGE, "setting": proxy.get("setting"),
    }  # fmt: skip
    if isinstance(exc, Failure):
        case = exc.case
        fields.update(exc.fields)
    elif status == 403 or (status == 401 and code != "RepoNotFound"):
        case = "401-token" if status == 401 and _TOKEN else str(status)
        fields["server"] = response.headers.get("X-Error-Message", "")[:300]
    elif status is not None and status != 407:
        case = "missing" if status in (401, 404) else "429" if status == 429 else "http"
        fields["missing"] = {  # what a 404 (or an anonymous 401) lacks, by the Hub's X-Error-Code
            "RepoNotFound": f"repository {repo}",
            "RevisionNotFound": f"such revision of {repo} (the [weights] revision)",
        }.get(code, f"{what or 'such file'} in {repo}")
        if status == 401:
            fields["check"] = f"Check the token can read {repo} ({TOKENS_PAGE}); check"
        fields["what"] = what or "a request"
    elif isinstance(exc, OSError) and exc.errno is not None:  # the disk, not the network
        case, fields["strerror"] = "write", exc.strerror
    else:  # a broken connection, or a plain-http request the proxy answered (407)
        case = "offline"
        fields.update(zip(("kind", "reason", "hint"), transport(chain, proxy, status), strict=True))
        if response is not None:
            fields["host"] = host_of(str(response.request.url))
    error, message, hint = SENTENCES[case]
    fields["hint"] = str(fields.get("hint")).format(**fields)
    return {"error": error, "message": message.format(**fields), "hint": hint.format(**fields),
            **{key: fields.get(key) for key in ("kind", "host", "reason", "server")}}  # fmt: skip


def transport(
    chain: list[BaseException], proxy: dict[str, Any], status: int | None
) -> tuple[str, str, str]:
    """A broken connection: its kind, the reason in words, the next step."""
    names = {type(e).__name__ for e in chain}
    text = " ".join(str(e) for e in chain).lower()
    # The innermost cause names the problem; the outer ones are the library's wrapping.
    last = str(chain[-1]).strip()
    short = (last.splitlines()[0] if last else type(chain[-1]).__name__)[:200]
    via = proxy.get("netloc")
    if status == 407 or ("407" in text and (via or "ProxyError" in names)):
        return "proxy-auth", proxy["auth_reason"], PROXY_HINT
    if "ProxyError" in names or (via and names & {"ConnectError", "ConnectTimeout"}):
        where = f"the proxy {via}" if via else "the proxy"
        return "proxy", f"{where} could not be reached or refused to connect", PROXY_HINT
    if "certificate" in text or "SSLError" in names or "ssl" in text:
        if "certificate_verify_failed" in text or "certificate verify failed" in text:
            return "tls", "its TLS certificate is not trusted on this computer", TLS_HINT
        return "tls", f"the TLS handshake failed ({short})", TLS_HINT
    for kind, classes, words, reason, hint in TRANSPORT:
        if names & set(classes) or any(word in text for word in words):
            return kind, reason, hint
    return "other", short, OFFLINE_HINT


def host_of(url: str) -> str:
    """``host[:port]``, never the credentials of a URL."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname or ""


def main() -> int:
    request = json.loads(sys.stdin.read())
    # huggingface_hub reads 10 MB per chunk and writes (and reports) whole chunks: a
    # smaller chunk keeps progress live and loses less when the connection drops.
    constants.DOWNLOAD_CHUNK_SIZE = CHUNK_BYTES
    try:
        results = run(request)
    except Exception as exc:  # every failure becomes one line the parent raises
        emit("error", **explain(exc, request.get("proxy") or {}))
        return 1
    emit("done", results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
