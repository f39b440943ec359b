"""A minimal Hugging Face Hub client and huggingface_hub's cache layout.

Only what fetching SAM 3 ahead of time needs: file metadata (``HEAD
/resolve``), a repository's file list, resumable and verified downloads, and
the ``refs/ blobs/ snapshots/`` folders that ``huggingface_hub`` reads with
``HF_HUB_OFFLINE=1``. The Hub's refusals become sentences that say what to do.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import quote, urljoin, urlsplit

import httpx

from geolibre_env.errors import InstallCancelledError, WeightsError
from geolibre_env.http_client import host_of, proxy_auth_reason, transport_failure
from geolibre_env.progress import CancelToken
from geolibre_env.proxies import ProxyConfig, has_credentials, proxy_netloc
from geolibre_env.redact import redact

RepoType = Literal["model", "dataset"]

PUBLIC_HUB = "https://huggingface.co"
TOKENS_PAGE = f"{PUBLIC_HUB}/settings/tokens"
OFFLINE_HINT = (
    "Connect to the internet, set HF_ENDPOINT to a mirror, "
    "or use a local checkpoint (--checkpoint / SAM3_CHECKPOINT_PATH)."
)
PROXY_HINT = (
    "Check the proxy setting ({setting}); a proxy that asks for a password takes it in the "
    "URL (http://user:password@host:port)."
)
LFS_SHA256 = re.compile(r"^[0-9a-f]{64}$")
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
# Etags and commits become file and folder names: nothing that could climb out.
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MAX_RELATIVE_REDIRECTS = 5
# A dropped transfer that made progress is resumed this many times in one call.
RESUME_ATTEMPTS = 3
RESUME_DELAY_S = 0.5
HASH_BLOCK_BYTES = 1 << 20
SERVER_MESSAGE_MAX_CHARS = 300


class GatedWeightsError(WeightsError):
    """The Hub refused the token (401) or the licence is not accepted (403)."""

    def __init__(self, message: str, *, hint: str, status: int, repo: str, server: str) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.repo = repo
        self.server_message = server  # the Hub's own X-Error-Message, redacted


class HubOfflineError(WeightsError):
    """The Hub (or its CDN) could not be reached, or a transfer kept breaking."""

    def __init__(self, message: str, *, hint: str, kind: str, host: str, reason: str) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
        self.host = host
        self.reason = reason


class WeightsIntegrityError(WeightsError):
    """A downloaded file did not match the Hub's checksum or size; it was discarded."""


class WeightsCancelledError(WeightsError, InstallCancelledError):
    """The user cancelled; the partial file is kept so the next run resumes."""


@dataclass(frozen=True)
class HubFile:
    """One file's metadata from ``HEAD /resolve``: where to get it and how to check it."""

    repo: str
    repo_type: RepoType
    filename: str
    commit: str
    etag: str
    size: int
    location: str = field(repr=False)  # a signed CDN link for LFS files: keep it out of logs
    is_lfs: bool = False

    @property
    def sha256(self) -> str | None:
        """The content hash for LFS files (their etag); git-stored files have none."""
        return self.etag if self.is_lfs and LFS_SHA256.match(self.etag) else None


@dataclass(frozen=True)
class RepoListing:
    repo: str
    commit: str
    files: tuple[str, ...]


class HubClient:
    """Talks to one Hub endpoint with an optional token over a caller-owned client."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        endpoint: str,
        token: str | None,
        proxies: ProxyConfig | None = None,
    ) -> None:
        self._client = client
        self.endpoint = endpoint.rstrip("/")
        self._token = token
        self._host = urlsplit(self.endpoint).netloc
        self._proxies = proxies or ProxyConfig()

    def resolve_url(self, repo: str, filename: str, *, revision: str, repo_type: RepoType) -> str:
        prefix = "datasets/" if repo_type == "dataset" else ""
        rev = quote(revision, safe="")
        return f"{self.endpoint}/{prefix}{repo}/resolve/{rev}/{quote(filename)}"

    def file_metadata(
        self, repo: str, filename: str, *, revision: str = "main", repo_type: RepoType = "model"
    ) -> HubFile:
        """HEAD the file; relative redirects (renamed repos) are followed, the CDN one is not."""
        url = self.resolve_url(repo, filename, revision=revision, repo_type=repo_type)
        for _ in range(MAX_RELATIVE_REDIRECTS):
            response = self._send("HEAD", url, follow=False)
            location = response.headers.get("location", "")
            if response.is_redirect and location and not urlsplit(location).netloc:
                url = urljoin(url, location)
                continue
            break
        self._check(response, repo, repo_type, f"{filename} at revision {revision}")
        headers = response.headers
        linked_etag = headers.get("x-linked-etag")
        etag = (linked_etag or headers.get("etag") or "").removeprefix("W/").strip('"')
        size_text = headers.get("x-linked-size") or (
            None if response.is_redirect else headers.get("content-length")
        )
        commit = headers.get("x-repo-commit", "")
        if not (SAFE_NAME.match(etag) and SAFE_NAME.match(commit) and (size_text or "").isdigit()):
            raise WeightsError(
                f"{host_of(url)} answered for {repo}/{filename} without the Hub's file metadata.",
                hint="Check HF_ENDPOINT (the Hub or a mirror of it) and any proxy in between.",
            )
        return HubFile(
            repo=repo,
            repo_type=repo_type,
            filename=filename,
            commit=commit,
            etag=etag,
            size=int(size_text or 0),
            location=urljoin(url, location) if response.is_redirect and location else url,
            is_lfs=linked_etag is not None,
        )

    def list_files(
        self, repo: str, *, revision: str = "main", repo_type: RepoType = "model"
    ) -> RepoListing:
        """The repository's file names and the commit they belong to."""
        kind = "datasets" if repo_type == "dataset" else "models"
        url = f"{self.endpoint}/api/{kind}/{repo}/revision/{quote(revision, safe='')}"
        response = self._send("GET", url, follow=True)
        self._check(response, repo, repo_type, f"revision {revision}")
        try:
            data = response.json()
            commit = str(data["sha"])
            files = tuple(str(item["rfilename"]) for item in data.get("siblings", []))
        except (ValueError, KeyError, TypeError):
            raise WeightsError(
                f"{host_of(url)} answered the file list of {repo} with something unexpected.",
                hint="Check HF_ENDPOINT (it must be the Hub or a mirror of it).",
            ) from None
        if not SAFE_NAME.match(commit):
            raise WeightsError(f"{host_of(url)} gave {repo} an unusable commit id.")
        return RepoListing(repo=repo, commit=commit, files=files)

    def download(
        self,
        meta: HubFile,
        dest: Path,
        *,
        on_bytes: Callable[[int], None],
        cancel: CancelToken | None = None,
    ) -> None:
        """Fetch ``meta`` to ``dest``, resuming ``dest.incomplete``; verified, then renamed."""
        partial = _PartialFile(dest.with_name(dest.name + ".incomplete"), meta)
        attempts_left = RESUME_ATTEMPTS
        while partial.size < meta.size:
            _raise_if_cancelled(cancel, meta)
            start = partial.size
            try:
                self._transfer(meta, partial, on_bytes, cancel)
            except _LinkRefused as refused:
                # Signed CDN links expire (a resume can come later): ask the Hub for a new one.
                if attempts_left == 0:
                    raise WeightsError(
                        f"{refused.host} refused the download link for {meta.filename} "
                        f"(HTTP {refused.status}).",
                        hint="Run the download again: it continues with a fresh link.",
                    ) from None
                attempts_left -= 1
                fresh = self.file_metadata(
                    meta.repo, meta.filename, revision=meta.commit, repo_type=meta.repo_type
                )
                meta = replace(meta, location=fresh.location)
                continue
            except httpx.TransportError as exc:
                if partial.size > start and attempts_left > 0:
                    attempts_left -= 1
                    _pause(RESUME_DELAY_S, cancel, meta)
                    continue
                raise self._offline(exc, meta.location, meta=meta, kept=partial.size) from None
            if partial.size < meta.size:
                # The body ended early without a transport error: resume once more at most.
                if partial.size == start or attempts_left == 0:
                    raise WeightsIntegrityError(
                        f"The Hub sent {partial.size} of {meta.size} bytes of {meta.filename}.",
                        hint="Run the download again; it continues from there.",
                    )
                attempts_left -= 1
        partial.verify_and_move(dest)

    # Internals --------------------------------------------------------------
    def _transfer(
        self,
        meta: HubFile,
        partial: _PartialFile,
        on_bytes: Callable[[int], None],
        cancel: CancelToken | None,
    ) -> None:
        headers = {"Range": f"bytes={partial.size}-"} if partial.size else {}
        with self._client.stream(
            "GET", meta.location, headers=self._headers(meta.location) | headers,
            follow_redirects=True,
        ) as response:  # fmt: skip
            if response.status_code == 416:
                partial.reset()  # the partial file no longer fits the file: start over
                return
            host = urlsplit(str(response.url)).netloc
            if response.status_code in (401, 403) and host != self._host:
                raise _LinkRefused(host_of(str(response.url)), response.status_code)
            self._check(response, meta.repo, meta.repo_type, meta.filename)
            if not (response.status_code == 206 and _range_start(response) == partial.size):
                partial.reset()  # the server ignored Range (200): restart cleanly
            with partial.path.open("ab") as handle:
                for chunk in response.iter_bytes():
                    _raise_if_cancelled(cancel, meta)
                    handle.write(chunk)
                    partial.add(chunk)
                    on_bytes(partial.size)
                    if partial.size > meta.size:
                        break

    def _headers(self, url: str) -> dict[str, str]:
        # identity: sizes and Range offsets must be in file bytes, not gzip bytes.
        headers = {"Accept-Encoding": "identity"}
        # The token goes to the Hub only, never to a CDN host (signed URLs need none).
        if self._token and urlsplit(url).netloc == self._host:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _send(self, method: str, url: str, *, follow: bool) -> httpx.Response:
        try:
            return self._client.request(
                method, url, headers=self._headers(url), follow_redirects=follow
            )
        except httpx.TransportError as exc:
            raise self._offline(exc, url) from None

    def _check(self, response: httpx.Response, repo: str, repo_type: RepoType, what: str) -> None:
        status = response.status_code
        if status < 400:
            return
        if status == 407:  # a plain-http request answered by the proxy itself
            proxy = self._proxies.for_url(str(response.url))
            raise HubOfflineError(
                f"Could not reach the Hugging Face Hub at {host_of(str(response.url))}: "
                f"{proxy_auth_reason(proxy_netloc(proxy), has_credentials(proxy))}.",
                hint=PROXY_HINT.format(setting=self._proxies.setting_for(str(response.url))),
                kind="proxy-auth",
                host=host_of(str(response.url)),
                reason="HTTP 407",
            )
        page = f"{PUBLIC_HUB}/{'datasets/' if repo_type == 'dataset' else ''}{repo}"
        server = redact(response.headers.get("x-error-message", ""))[:SERVER_MESSAGE_MAX_CHARS]
        if status in (401, 403):
            raise _gated(status, repo, page, has_token=bool(self._token), server=server)
        if status == 404:
            code = response.headers.get("x-error-code", "")
            missing = {"RepoNotFound": f"the repository {repo}"}.get(code, f"{what} in {repo}")
            raise WeightsError(
                f"The Hub at {host_of(self.endpoint)} has no {missing}.",
                hint="Check HF_ENDPOINT and the [weights] section of the model-env spec.",
            )
        if status == 429:
            raise WeightsError(
                "The Hugging Face Hub is limiting how fast we may download (HTTP 429).",
                hint="Wait a few minutes and retry; a Hub token raises the limit.",
            )
        raise WeightsError(
            f"The Hugging Face Hub answered HTTP {status} for {repo} ({what}).",
            hint="The Hub may be having trouble: retry in a few minutes.",
        )

    def _offline(
        self, exc: BaseException, url: str, *, meta: HubFile | None = None, kept: int = 0
    ) -> HubOfflineError:
        failure = transport_failure(exc, proxy=self._proxies.for_url(url))
        host = host_of(url)
        hint = OFFLINE_HINT
        if failure.kind == "tls":
            hint = (
                "If a corporate proxy inspects TLS, set GEOLIBRE_ML_CA_BUNDLE to its root "
                "certificate (verification stays on); or use a local checkpoint "
                "(--checkpoint / SAM3_CHECKPOINT_PATH)."
            )
        elif failure.kind in ("proxy", "proxy-auth"):
            hint = PROXY_HINT.format(setting=self._proxies.setting_for(url))
        message = f"Could not reach the Hugging Face Hub at {host}: {failure.reason}."
        if meta is not None and kept:
            message = f"The download of {meta.filename} from {host} broke off: {failure.reason}."
            hint = f"Run it again: it continues from the {kept / 1e6:.1f} MB already received."
        return HubOfflineError(
            message, hint=hint, kind=failure.kind, host=host, reason=failure.reason
        )


class _LinkRefused(Exception):
    """The CDN (not the Hub) refused a signed link: it expired; not a licence problem."""

    def __init__(self, host: str, status: int) -> None:
        super().__init__(host, status)
        self.host, self.status = host, status


class _PartialFile:
    """``<dest>.incomplete`` and a running sha256 of what it holds (one pass over the data)."""

    def __init__(self, path: Path, meta: HubFile) -> None:
        self.path = path
        self.meta = meta
        path.parent.mkdir(parents=True, exist_ok=True)
        self._hasher = hashlib.sha256()
        self.size = 0
        if path.exists() and path.stat().st_size > meta.size:
            path.unlink()
        if path.exists():
            with path.open("rb") as handle:
                while block := handle.read(HASH_BLOCK_BYTES):
                    self.add(block)
        else:
            path.touch()

    def add(self, chunk: bytes) -> None:
        if self.meta.sha256:
            self._hasher.update(chunk)
        self.size += len(chunk)

    def reset(self) -> None:
        self.path.write_bytes(b"")
        self._hasher = hashlib.sha256()
        self.size = 0

    def verify_and_move(self, dest: Path) -> None:
        meta = self.meta
        expected, actual = meta.sha256, self._hasher.hexdigest()
        if self.size != meta.size or (expected is not None and actual != expected):
            self.path.unlink(missing_ok=True)
            found = f"sha256 {actual[:12]}…" if self.size == meta.size else f"{self.size} bytes"
            wanted = f"sha256 {expected[:12]}…" if expected and self.size == meta.size else None
            raise WeightsIntegrityError(
                f"{meta.filename} from {meta.repo} did not match the Hub's checksum "
                f"({found} instead of {wanted or f'{meta.size} bytes'}), so it was discarded.",
                hint="Run the download again; if it fails the same way, a proxy or the mirror "
                "in HF_ENDPOINT is altering the file.",
            )
        os.replace(self.path, dest)


def _range_start(response: httpx.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("content-range", ""))
    return int(match.group(1)) if match else None


def _pause(seconds: float, cancel: CancelToken | None, meta: HubFile) -> None:
    if cancel is None:
        time.sleep(seconds)
    elif cancel.wait(seconds):
        _raise_if_cancelled(cancel, meta)


def _raise_if_cancelled(cancel: CancelToken | None, meta: HubFile) -> None:
    if cancel is not None and cancel.cancelled:
        raise WeightsCancelledError(
            f"The download of {meta.filename} was cancelled.",
            hint="Run it again to continue where it stopped.",
        )


def _gated(status: int, repo: str, page: str, *, has_token: bool, server: str) -> GatedWeightsError:
    if status == 401 and not has_token:
        message = f"The Hugging Face Hub refused access to {repo} (HTTP 401: no token was given)."
        hint = (
            f"{repo} is gated: accept its licence on the Hub ({page}), create a read token "
            f"({TOKENS_PAGE}), then retry with the token (--token or HF_TOKEN)."
        )
    elif status == 401:
        message = (
            f"The Hugging Face Hub refused access to {repo} (HTTP 401: the token was rejected)."
        )
        hint = (
            f"Check the token is current ({TOKENS_PAGE}), accept the licence for {repo} on the "
            f"Hub ({page}), then retry."
        )
    else:
        message = f"The Hugging Face Hub refused access to {repo} (HTTP 403)."
        hint = (
            f"Accept the licence for {repo} on the Hub ({page}), make sure your token can read "
            "gated repositories, then retry."
        )
    return GatedWeightsError(message, hint=hint, status=status, repo=repo, server=server)


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
