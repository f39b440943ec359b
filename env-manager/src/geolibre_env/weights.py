"""SAM 3's weights: the Hub token, what is on disk, fetching ahead of time, and
the environment samgeo-api needs so that a request never waits on the network.

Two routes: the gated ``facebook/sam3`` repository laid out in huggingface_hub's
cache under the model environment's own ``HF_HOME``, or a local checkpoint
(``SAM3_CHECKPOINT_PATH``, the air-gapped route, ``meta`` backend only). Both
need SAM 3's tokenizer vocabulary inside the samgeo package.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from geolibre_env.errors import ConfigError, InstallCancelledError, WeightsError
from geolibre_env.hub_cache import RepoCache
from geolibre_env.hub_errors import (
    TOKENS_PAGE,
    HubOfflineError,
    WeightsCancelledError,
    runner_error,
)
from geolibre_env.paths import Paths
from geolibre_env.progress import CancelToken, ProgressEvent, ProgressSink, discard
from geolibre_env.redact import redact, register_secret
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec
from geolibre_env.trust import base_roots, combined_bundle
from geolibre_env.uv_runner import PASSTHROUGH_NAMES, stream_lines

if TYPE_CHECKING:
    from geolibre_env.model_env import ActiveEnvironment

log = logging.getLogger(__name__)

Backend = Literal["meta", "transformers"]
Route = Literal["hub", "checkpoint", "none"]
BACKENDS: tuple[Backend, ...] = ("meta", "transformers")
PROGRESS_INTERVAL_S = 0.1
# huggingface_hub's own settings a user may need to pass on (HF_HUB_DISABLE_XET: for
# networks whose TLS inspection breaks the Xet transfers).
HF_PASSTHROUGH = ("HF_HUB_DISABLE_XET", "HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_ETAG_TIMEOUT")
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
    return bool(resolve_token(settings, None, paths))


def resolve_token(settings: EnvSettings, token: str | None, paths: Paths) -> str | None:
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
    python: Path | str | Sequence[str] | None = None,
    python_env: Mapping[str, str] | None = None,
) -> WeightsStatus:
    """Download what ``backend`` needs ahead of time with huggingface_hub, run by
    ``python`` (the model environment's; by default this one; a command line such as
    ``uv run --with ...`` with its variables in ``python_env``), resumably.

    With everything present (and no ``refresh``) nothing touches the network.
    """
    _check_backend(backend)
    weights, paths = spec.weights, settings.paths
    token = resolve_token(settings, token, paths)
    checkpoint = _absolute(checkpoint or settings.checkpoint_path)
    if checkpoint is not None:
        _check_checkpoint(checkpoint, backend, weights.repo)

    def status() -> WeightsStatus:
        return weights_status(
            settings, spec, backend=backend, site_packages=site_packages, checkpoint=checkpoint
        )

    before = status()
    meter = ByteMeter(progress)
    if before.present and not refresh:
        meter.total = meter.base = before.total_bytes
        meter.finish("SAM 3 weights already present")
        return before
    items: list[dict[str, Any]] = []
    if checkpoint is None:
        files = list(weights.meta_files) if backend == "meta" else None
        items.append({"repo": weights.repo, "revision": weights.revision, "files": files,
                      "exclude": list(weights.transformers_exclude)})  # fmt: skip
    vocab = _vocab_path(spec, site_packages)
    if vocab is not None and (refresh or not _nonempty_file(vocab)):
        items.append({"repo": weights.vocab_repo, "repo_type": weights.vocab_repo_type,
                      "revision": "main", "files": [weights.vocab_file],
                      "copy_to": str(vocab)})  # fmt: skip
    try:
        results = run_hub_runner(settings, items, token=token, meter=meter, cancel=cancel,
                                 python=python, repo=weights.repo,
                                 python_env=python_env)  # fmt: skip
    except HubOfflineError as exc:
        if checkpoint is None or vocab is None:
            raise
        action = (f"connect once, set HF_ENDPOINT to a mirror, or copy {weights.vocab_file} "
                  f"into {vocab.parent}.")  # fmt: skip
        raise HubOfflineError(
            f"Could not reach the Hugging Face Hub at {exc.host} to fetch SAM 3's tokenizer "
            f"vocabulary ({weights.vocab_file}): {exc.reason}.",
            hint=f"The local checkpoint covers the weights, not the vocabulary: {action}",
            kind=exc.kind, host=exc.host, reason=exc.reason,
        ) from None  # fmt: skip
    if checkpoint is None and results:
        got = results[0]
        record_weight_files(paths, backend, weights.repo, str(got["commit"]), got["files"])
    meter.finish("SAM 3 weights ready")
    return status()


def run_hub_runner(
    settings: EnvSettings,
    items: list[dict[str, Any]],
    *,
    token: str | None,
    meter: ByteMeter,
    cancel: CancelToken | None,
    python: Path | str | Sequence[str] | None,
    repo: str,
    python_env: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Run :mod:`geolibre_env.hub_runner` for ``items``; its lines become progress."""
    if not items:
        return []
    request = {"cache_dir": str(settings.paths.hf_home / "hub"), "items": items}
    outcome: dict[str, Any] = {}

    def on_line(line: str) -> None:
        try:
            data = json.loads(line)
        except ValueError:
            log.debug("hub runner: %s", redact(line))
            return
        if isinstance(data, dict):
            outcome.update(meter.read(data))

    chosen = settings.hub_python or python or sys.executable
    launcher = [str(chosen)] if isinstance(chosen, str | Path) else list(chosen)
    argv = [*launcher, str(Path(__file__).with_name("hub_runner.py"))]
    names = ", ".join(f"{item['repo']} ({', '.join(item['files'] or ['all'])})" for item in items)
    log.info("Fetching %s from %s with %s", names, settings.hub_endpoint, argv[0])
    try:
        env = {**(python_env or {}), **runner_environment(settings, token)}
        code, tail, _ = stream_lines(argv, env=env,
                                     on_line=on_line, cancel=cancel,
                                     stdin_text=json.dumps(request))  # fmt: skip
    except InstallCancelledError:
        raise WeightsCancelledError(
            f"The download of {meter.file or 'the SAM 3 weights'} was cancelled.",
            hint="Run it again to continue where it stopped.",
        ) from None
    if "error" in outcome:
        raise runner_error(outcome["error"], repo=repo, endpoint=settings.hub_endpoint,
                           proxies=settings.proxies, has_token=bool(token))  # fmt: skip
    if code != 0 and any("No module named 'huggingface_hub'" in line for line in tail):
        raise WeightsError(
            f"{launcher[0]} cannot fetch the SAM 3 weights: it has no huggingface_hub.",
            hint="Repair the model environment (`geolibre-ml repair`), or set "
            "GEOLIBRE_ML_HUB_PYTHON to a Python that has huggingface_hub.",
        )
    if code != 0 or "results" not in outcome:
        last = redact(" ".join(tail[-3:]))[:300]
        raise WeightsError(
            f"The weights download stopped unexpectedly (exit code {code}): {last or 'no output'}.",
            hint="Run it again: it continues from the bytes already received.",
        )
    return list(outcome["results"])


def runner_environment(settings: EnvSettings, token: str | None) -> dict[str, str]:
    """The runner's environment: the model env's Hub home, the endpoint (a mirror),
    the proxies and roots the rest of the install uses, the token; nothing else of ours."""
    env = {
        key: value
        for key, value in settings.environ.items()
        if (key in PASSTHROUGH_NAMES and not key.startswith("SSL_CERT"))
        or key in HF_PASSTHROUGH
        or key.startswith("HF_XET_")
    }
    env.update(settings.proxies.child_environment())
    env.update(HF_HOME=str(settings.paths.hf_home), HF_ENDPOINT=settings.hub_endpoint,
               HF_HUB_DISABLE_TELEMETRY="1")  # fmt: skip
    # huggingface_hub's httpx reads SSL_CERT_FILE (both 1.x and 2.x, measured): the
    # OS roots, plus GEOLIBRE_ML_CA_BUNDLE in one file as uv gets it.
    if settings.ca_bundle is not None:
        roots: Path | None = combined_bundle(settings.paths, settings.ca_bundle, settings.environ)
    else:
        roots = base_roots(settings.environ)
    if roots is not None:
        env["SSL_CERT_FILE"] = str(roots)
    if token:
        env["HF_TOKEN"] = token
    return env


class ByteMeter:
    """The hub runner's lines as byte progress over the whole fetch, at most one event per
    PROGRESS_INTERVAL_S; a file's resumed bytes count once (positions are absolute)."""

    def __init__(self, sink: ProgressSink) -> None:
        self.sink = sink
        self.total = self.base = 0  # base: bytes of the items and files already finished
        self.file, self._file_total, self._last = "", 0, 0.0
        self._item_total = self._item_done = 0  # the current item: its size, files done

    def read(self, data: dict[str, Any]) -> dict[str, Any]:
        event = data.get("event")
        if event == "plan":
            self.base += self._item_total
            self._item_total, self._item_done = int(data.get("total") or 0), 0
            self.total = self.base + self._item_total
        elif event == "start":
            self.file, self._file_total = str(data["file"]), int(data["size"])
            self._update(int(data.get("resumed") or 0), force=True)
        elif event == "progress":
            self._update(int(data.get("done") or 0))
        elif event == "file":
            self._item_done += int(data.get("size") or 0)
        elif event in ("error", "done"):
            return {event: data} if event == "error" else {"results": data.get("results", [])}
        return {}

    def _update(self, file_done: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= PROGRESS_INTERVAL_S:
            self._last = now
            extra = {"file": self.file, "file_done": file_done, "file_total": self._file_total}
            self._emit(self.file, self.base + self._item_done + file_done, extra)

    def finish(self, message: str) -> None:
        self.base += self._item_total
        self._item_total = self._item_done = 0
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


def _check_checkpoint(checkpoint: Path, backend: Backend, repo: str) -> None:
    if backend != "meta":
        raise WeightsError(
            "A local SAM 3 checkpoint serves the meta backend only; the transformers "
            f"backend needs the {repo} repository files.",
            hint="Unset SAM3_CHECKPOINT_PATH and fetch them with a Hub token, "
            "or use the meta backend (it needs an NVIDIA GPU).",
        )
    problem = _checkpoint_problem(checkpoint)
    if problem is not None:
        raise WeightsError(
            f"The SAM 3 checkpoint {checkpoint} {problem}.",
            hint="Point --checkpoint / SAM3_CHECKPOINT_PATH at a readable sam3.pt.",
        )


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
