"""SAM 3's weights: the Hub token, what is on disk, fetching ahead of time, and
the environment samgeo-api needs so that a request never waits on the network.

Two routes: the gated ``facebook/sam3`` repository laid out in huggingface_hub's
cache under the model environment's own ``HF_HOME``, or a local checkpoint
(``SAM3_CHECKPOINT_PATH``, the air-gapped route, ``meta`` backend only). Both
need SAM 3's tokenizer vocabulary inside the samgeo package.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from geolibre_env.errors import ConfigError, WeightsError
from geolibre_env.http_client import make_client
from geolibre_env.hub import (
    TOKENS_PAGE,
    HubClient,
    HubFile,
    HubOfflineError,
    RepoCache,
    check_repo_filename,
)
from geolibre_env.paths import Paths
from geolibre_env.progress import CancelToken, ProgressEvent, ProgressSink, discard
from geolibre_env.redact import register_secret
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec

if TYPE_CHECKING:
    from geolibre_env.model_env import ActiveEnvironment

log = logging.getLogger(__name__)

Backend = Literal["meta", "transformers"]
Route = Literal["hub", "checkpoint", "none"]
BACKENDS: tuple[Backend, ...] = ("meta", "transformers")
PROGRESS_INTERVAL_S = 0.1
DISK_MARGIN_BYTES = 100_000_000
# Which files each backend needs, as last fetched (the transformers set comes
# from the Hub's listing, so it cannot be known offline otherwise).
MANIFEST_NAME = "geolibre-weights.json"


# The token ---------------------------------------------------------------------
def token_path(paths: Paths) -> Path:
    """Where huggingface_hub reads the token when ``HF_HOME`` is the model env's."""
    return paths.hf_home / "token"


def store_token(paths: Paths, token: str) -> None:
    """Write the token (mode 0600, atomically) where huggingface_hub looks for it."""
    token = token.strip()
    if not token or any(ch.isspace() for ch in token):
        raise ConfigError(
            "The Hugging Face token is empty or contains spaces.",
            hint=f"Copy a read token from {TOKENS_PAGE}.",
        )
    register_secret(token)
    target = token_path(paths)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".token.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # Created 0600 from the start: the secret is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(token)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_token(paths: Paths) -> str | None:
    """The stored token, or None."""
    try:
        token = token_path(paths).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    register_secret(token)
    return token or None


def token_configured(paths: Paths, settings: EnvSettings) -> bool:
    """Whether a token is available (environment or stored); never the token itself."""
    return bool(_resolve_token(settings, None, paths))


def _resolve_token(settings: EnvSettings, token: str | None, paths: Paths) -> str | None:
    for candidate in (token, settings.hub_token):
        if candidate and candidate.strip():
            register_secret(candidate.strip())
            return candidate.strip()
    return load_token(paths)


# What is on disk ---------------------------------------------------------------
@dataclass(frozen=True)
class WeightFile:
    name: str
    size: int


@dataclass(frozen=True)
class WeightsStatus:
    """What the chosen backend would find on disk; no secrets, no network."""

    route: Route
    backend: Backend
    present: bool
    repo: str
    commit: str | None
    files: tuple[WeightFile, ...]
    vocab_present: bool | None  # None: no model environment to look in
    vocab_path: Path | None
    checkpoint_path: Path | None
    missing: tuple[str, ...]
    token_configured: bool
    hf_home: Path

    @property
    def total_bytes(self) -> int:
        return sum(item.size for item in self.files)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"] = [{"name": item.name, "bytes": item.size} for item in self.files]
        data["missing"], data["total_bytes"] = list(self.missing), self.total_bytes
        for key in ("vocab_path", "checkpoint_path", "hf_home"):
            data[key] = str(data[key]) if data[key] is not None else None
        return data


def weights_status(
    settings: EnvSettings,
    spec: ModelEnvSpec,
    *,
    backend: Backend,
    site_packages: Path | None,
    checkpoint: Path | None = None,
) -> WeightsStatus:
    """What is present for ``backend``: fast, from the disk only."""
    _check_backend(backend)
    weights, paths = spec.weights, settings.paths
    vocab_path = _vocab_path(spec, site_packages)
    vocab_present = _nonempty_file(vocab_path) if vocab_path is not None else None
    checkpoint = _absolute(checkpoint or settings.checkpoint_path)
    files: list[WeightFile] = []
    missing: list[str] = []
    commit: str | None = None
    if checkpoint is not None and backend == "meta":
        route: Route = "checkpoint"
        if _checkpoint_problem(checkpoint) is None:
            files.append(WeightFile(checkpoint.name, checkpoint.stat().st_size))
        else:
            missing.append(str(checkpoint))
    else:
        cache = RepoCache(paths.hf_home / "hub", weights.repo)
        commit = cache.commit_for(weights.revision)
        expected = _expected_files(paths, spec, backend, commit)
        if commit is None or not expected:
            missing.append(f"{weights.repo} ({backend} files)")
        for name, size in expected.items():
            pointer = cache.pointer(commit or "", name)
            if pointer.is_file() and size in (None, pointer.stat().st_size):
                files.append(WeightFile(name, pointer.stat().st_size))
            else:
                missing.append(name)
        route = "hub" if not missing else "none"
    # Only SAM 3's own (meta) code reads samgeo's vocabulary; transformers' processor
    # takes its tokenizer from the repository's files.
    if vocab_present is False and backend == "meta":
        missing.append(weights.vocab_file)
    return WeightsStatus(
        route=route,
        backend=backend,
        present=not missing,
        repo=weights.repo,
        commit=commit,
        files=tuple(files),
        vocab_present=vocab_present,
        vocab_path=vocab_path,
        checkpoint_path=checkpoint if route == "checkpoint" else None,
        missing=tuple(missing),
        token_configured=token_configured(paths, settings),
        hf_home=paths.hf_home,
    )


def active_weights_status(
    settings: EnvSettings,
    spec: ModelEnvSpec,
    active: ActiveEnvironment | None,
    *,
    backend: Backend | None = None,
) -> WeightsStatus:
    """:func:`weights_status` for ``backend``, by default the one the active environment
    was built for (its install plan's choice)."""
    chosen: Backend = backend or planned_backend(active, "meta") or "meta"
    return weights_status(
        settings, spec, backend=chosen, site_packages=active.site_packages if active else None
    )


def planned_backend(
    active: ActiveEnvironment | None, fallback: Backend | None = None
) -> Backend | None:
    """The SAM 3 implementation that runs for requests that do not name one: the one
    the install plan chose, recorded in the environment (``fallback`` without one)."""
    if active is None:
        return fallback
    recorded = active.record.get("sam3_backend")
    chosen: Backend = recorded if recorded in BACKENDS else "meta"
    # A plan may choose meta for a GPU that verification then found unusable: the
    # sidecar sends such requests to transformers (geolibre_sidecar.sam3_modes).
    return chosen if active.record.get("cuda_working") else "transformers"


def backend_environment(
    settings: EnvSettings, spec: ModelEnvSpec, status: WeightsStatus
) -> dict[str, str]:
    """The variables samgeo-api runs with; never the token (huggingface_hub reads
    ``$HF_HOME/token`` itself when it must go online)."""
    env = {"HF_HOME": str(settings.paths.hf_home)}
    if status.present:
        # Everything is local: a request must fail fast, never wait on the network.
        env["HF_HUB_OFFLINE"] = "1"
    if status.route == "checkpoint" and status.checkpoint_path is not None:
        env["SAM3_CHECKPOINT_PATH"] = str(status.checkpoint_path)
    return env


# Fetching ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    meta: HubFile
    dest: Path  # the blob (cache) or the vocabulary file
    pointer: Path | None  # the snapshot entry to link, for cache files


def fetch_weights(
    settings: EnvSettings,
    spec: ModelEnvSpec,
    *,
    backend: Backend,
    token: str | None = None,
    site_packages: Path | None = None,
    progress: ProgressSink = discard,
    cancel: CancelToken | None = None,
    checkpoint: Path | None = None,
    refresh: bool = False,
) -> WeightsStatus:
    """Download what ``backend`` needs ahead of time, resumably; skip what is there.

    With everything present (and no ``refresh``) nothing touches the network.
    """
    _check_backend(backend)
    weights, paths = spec.weights, settings.paths
    token = _resolve_token(settings, token, paths)
    checkpoint = _absolute(checkpoint or settings.checkpoint_path)
    if checkpoint is not None:
        if backend != "meta":
            raise WeightsError(
                "A local SAM 3 checkpoint serves the meta backend only; the transformers "
                f"backend needs the {weights.repo} repository files.",
                hint="Unset SAM3_CHECKPOINT_PATH and fetch them with a Hub token, "
                "or use the meta backend (it needs an NVIDIA GPU).",
            )
        problem = _checkpoint_problem(checkpoint)
        if problem is not None:
            raise WeightsError(
                f"The SAM 3 checkpoint {checkpoint} {problem}.",
                hint="Point --checkpoint / SAM3_CHECKPOINT_PATH at a readable sam3.pt.",
            )

    def status() -> WeightsStatus:
        return weights_status(
            settings, spec, backend=backend, site_packages=site_packages, checkpoint=checkpoint
        )

    before = status()
    meter = _Meter(progress)
    if before.present and not refresh:
        meter.total = meter.base = before.total_bytes
        meter.finish("SAM 3 weights already present")
        return before
    vocab_path = _vocab_path(spec, site_packages)
    with make_client(settings) as client:
        hub = HubClient(
            client, endpoint=settings.hub_endpoint, token=token, proxies=settings.proxies
        )
        cache = RepoCache(paths.hf_home / "hub", weights.repo)
        jobs: list[_Job] = []
        commit = None
        if checkpoint is None:
            commit, jobs = _weight_jobs(hub, cache, spec, backend)
        if vocab_path is not None and (refresh or not _nonempty_file(vocab_path)):
            jobs.append(_vocab_job(hub, spec, vocab_path, air_gapped=checkpoint is not None))
        _check_disk(jobs)
        meter.total = sum(job.meta.size for job in jobs)
        for job in jobs:
            _run_job(hub, cache, job, meter, cancel)
        if commit is not None:
            # Last: refs/main names a commit only once its snapshot is complete.
            cache.write_ref(weights.revision, commit)
            _write_manifest(paths, backend, weights.repo, commit, jobs)
    meter.finish("SAM 3 weights ready")
    return status()


def _weight_jobs(
    hub: HubClient, cache: RepoCache, spec: ModelEnvSpec, backend: Backend
) -> tuple[str, list[_Job]]:
    weights = spec.weights
    if backend == "transformers":
        listing = hub.list_files(weights.repo, revision=weights.revision)
        commit: str | None = listing.commit
        names = [
            name
            for name in listing.files
            if not any(fnmatch.fnmatch(name, pattern) for pattern in weights.transformers_exclude)
        ]
    else:
        commit, names = None, list(weights.meta_files)
    jobs = []
    for name in names:
        # Pinned to the first answer's commit: one consistent snapshot even if main moves.
        meta = hub.file_metadata(
            weights.repo, check_repo_filename(name), revision=commit or weights.revision
        )
        commit = commit or meta.commit
        jobs.append(_Job(meta, cache.blob(meta.etag), cache.pointer(meta.commit, name)))
    if commit is None:
        raise WeightsError(f"The Hub listed no files for {weights.repo}.")
    return commit, jobs


def _vocab_job(hub: HubClient, spec: ModelEnvSpec, dest: Path, *, air_gapped: bool) -> _Job:
    weights = spec.weights
    repo_type = "dataset" if weights.vocab_repo_type == "dataset" else "model"
    try:
        meta = hub.file_metadata(weights.vocab_repo, weights.vocab_file, repo_type=repo_type)
    except HubOfflineError as exc:
        action = (
            f"connect once, set HF_ENDPOINT to a mirror, or copy {weights.vocab_file} "
            f"into {dest.parent}."
        )
        raise HubOfflineError(
            f"Could not reach the Hugging Face Hub at {exc.host} to fetch SAM 3's tokenizer "
            f"vocabulary ({weights.vocab_file}): {exc.reason}.",
            hint=f"The local checkpoint covers the weights, not the vocabulary: {action}"
            if air_gapped
            else action[:1].upper() + action[1:],
            kind=exc.kind,
            host=exc.host,
            reason=exc.reason,
        ) from None
    return _Job(meta, dest, None)


def _run_job(
    hub: HubClient, cache: RepoCache, job: _Job, meter: _Meter, cancel: CancelToken | None
) -> None:
    name, size = job.meta.filename, job.meta.size
    if job.pointer is not None and job.pointer.is_file() and job.pointer.stat().st_size == size:
        meter.base += size
        return
    new_blob = not (job.dest.is_file() and job.dest.stat().st_size == size)
    if new_blob:
        log.info("Downloading %s (%d bytes) from %s", name, size, job.meta.repo)
        meter.start(name, size, resumed=_partial_size(job.dest))
        try:
            hub.download(
                job.meta, job.dest, on_bytes=lambda done: meter.update(name, done), cancel=cancel
            )
        except OSError as exc:  # the disk, not the network
            raise WeightsError(
                f"Could not write {name} into {job.dest.parent}: {exc.strerror or exc}.",
                hint="Check free disk space and that the folder is writable, then retry.",
            ) from None
    meter.base += size
    if job.pointer is not None:
        cache.link(job.dest, job.pointer, new_blob=new_blob)


class _Meter:
    """Byte progress over the whole fetch, at most one event per PROGRESS_INTERVAL_S."""

    def __init__(self, sink: ProgressSink) -> None:
        self.sink = sink
        self.total = self.base = 0  # base: bytes of the files already finished
        self._file_total, self._last = 0, 0.0

    def start(self, name: str, size: int, *, resumed: int) -> None:
        self._file_total = size
        self.update(name, resumed, force=True)

    def update(self, name: str, file_done: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= PROGRESS_INTERVAL_S:
            self._last = now
            extra = {"file": name, "file_done": file_done, "file_total": self._file_total}
            self._emit(name, self.base + file_done, extra)

    def finish(self, message: str) -> None:
        self._emit(message, self.base, {})

    def _emit(self, message: str, done: int, extra: dict[str, Any]) -> None:
        event = ProgressEvent("weights", message, done, self.total, "bytes", extra=extra)
        self.sink(event)


# Small helpers -------------------------------------------------------------------
def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"Unknown SAM 3 backend {backend!r}.", hint="Use meta or transformers.")


def _vocab_path(spec: ModelEnvSpec, site_packages: Path | None) -> Path | None:
    if site_packages is None:
        return None
    return site_packages / spec.weights.vocab_package_dir / spec.weights.vocab_file


def _absolute(path: Path | None) -> Path | None:
    # samgeo-api runs in another working directory: relative paths would break there.
    return path.expanduser().absolute() if path is not None else None


def _nonempty_file(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def _checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` cannot be the checkpoint, or None."""
    if not path.exists():
        return "does not exist"
    if not path.is_file():
        return "is not a file"
    try:
        with path.open("rb") as handle:
            if not handle.read(1):
                return "is empty"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def _expected_files(
    paths: Paths, spec: ModelEnvSpec, backend: Backend, commit: str | None
) -> dict[str, int | None]:
    entry = _read_manifest(paths).get(backend, {})
    if commit and entry.get("repo") == spec.weights.repo and entry.get("commit") == commit:
        return {str(name): int(size) for name, size in entry.get("files", {}).items()}
    if backend == "meta":
        return dict.fromkeys(spec.weights.meta_files)
    return {}


def _read_manifest(paths: Paths) -> dict[str, Any]:
    try:
        data = json.loads((paths.hf_home / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_manifest(
    paths: Paths, backend: Backend, repo: str, commit: str, jobs: list[_Job]
) -> None:
    files = {job.meta.filename: job.meta.size for job in jobs if job.pointer is not None}
    record_weight_files(paths, backend, repo, commit, files)


def record_weight_files(
    paths: Paths, backend: Backend, repo: str, commit: str, files: dict[str, int]
) -> None:
    """Remember which files (and sizes) ``backend`` needs at ``commit``: the transformers
    set comes from the Hub's listing, so an offline status check needs this record."""
    data = _read_manifest(paths)
    data[backend] = {"repo": repo, "commit": commit, "files": files}
    target = paths.hf_home / MANIFEST_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{MANIFEST_NAME}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, target)


def vocab_path(spec: ModelEnvSpec, site_packages: Path | None) -> Path | None:
    """Where samgeo looks for SAM 3's tokenizer vocabulary inside an environment."""
    return _vocab_path(spec, site_packages)


def _partial_size(dest: Path) -> int:
    partial = dest.with_name(dest.name + ".incomplete")
    return partial.stat().st_size if partial.is_file() else 0


def _check_disk(jobs: list[_Job]) -> None:
    """Refuse before downloading when a folder's drive cannot take what is still to come."""
    needed: dict[Path, int] = {}
    for job in jobs:
        if not (job.dest.exists() or (job.pointer is not None and job.pointer.exists())):
            folder = next(p for p in (*job.dest.parents, Path(".")) if p.exists())
            needed[folder] = needed.get(folder, 0) + job.meta.size - _partial_size(job.dest)
    for folder, size in needed.items():
        free = shutil.disk_usage(folder).free
        if free < size + DISK_MARGIN_BYTES:
            raise WeightsError(
                f"Not enough free disk for the SAM 3 weights: {size / 1e9:.1f} GB needed "
                f"in {folder}, {free / 1e9:.1f} GB free.",
                hint="Free some space (or move GEOLIBRE_ML_HOME to a larger drive), then retry.",
            )
