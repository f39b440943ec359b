"""SAM 3's weights: the Hub token, what is on disk, fetching ahead of time, and
the environment samgeo-api needs so that a request never waits on the network.

Two routes: the gated ``facebook/sam3`` repository laid out in huggingface_hub's
cache under the model environment's own ``HF_HOME``, or a local checkpoint
(``SAM3_CHECKPOINT_PATH``, the air-gapped route, ``meta`` backend only). Both
need SAM 3's tokenizer vocabulary inside the samgeo package.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from geolibre_env.errors import ConfigError, WeightsError
from geolibre_env.paths import Paths
from geolibre_env.progress import CancelToken, ProgressSink, discard
from geolibre_env.redact import register_secret
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import SAM3_IMPLEMENTATIONS, ModelEnvSpec, Sam3Implementation
from geolibre_env.weights.hub_cache import RepoFiles, cached
from geolibre_env.weights.hub_errors import HubOfflineError
from geolibre_env.weights.hub_fetch import run_hub_runner, weights_event

if TYPE_CHECKING:
    from geolibre_env.model_env import ActiveEnvironment

Route = Literal["hub", "checkpoint", "none"]
TOKENS_PAGE = "https://huggingface.co/settings/tokens"


# The token ---------------------------------------------------------------------
def store_token(paths: Paths, token: str) -> None:
    """Write the token (mode 0600) where huggingface_hub looks for it."""
    token = token.strip()
    if not token or any(ch.isspace() for ch in token):
        raise ConfigError(
            "The Hugging Face token is empty or contains spaces.",
            hint=f"Copy a read token from {TOKENS_PAGE}.",
        )
    register_secret(token)
    target = paths.hf_home / "token"
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # huggingface_hub's own login writes it with the umask's mode
        target.chmod(0o600)
    # Created 0600: never readable by others, not even briefly.
    with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(token)


def load_token(paths: Paths) -> str | None:
    """The stored token, or None."""
    try:
        token = (paths.hf_home / "token").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    register_secret(token)
    return token or None


def token_configured(paths: Paths, settings: EnvSettings) -> bool:
    """Whether a token is available (environment or stored); never the token itself."""
    return bool(resolve_token(settings, None, paths))


def resolve_token(settings: EnvSettings, token: str | None, paths: Paths) -> str | None:
    """The token given, else the environment's (HF_TOKEN), else the stored one."""
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
    backend: Sam3Implementation
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
    backend: Sam3Implementation,
    site_packages: Path | None,
    checkpoint: Path | None = None,
) -> WeightsStatus:
    """What is present for ``backend``: fast, from the disk only."""
    weights, paths = spec.weights, settings.paths
    vocab = vocab_path(spec, site_packages)
    vocab_present = _nonempty_file(vocab) if vocab is not None else None
    checkpoint = _absolute(checkpoint or settings.checkpoint_path)
    commit: str | None = None
    found: dict[str, int] = {}
    missing: list[str] = []
    if checkpoint is not None and backend == "meta":
        route: Route = "checkpoint"
        if _checkpoint_problem(checkpoint) is None:
            found[checkpoint.name] = checkpoint.stat().st_size
        else:
            missing.append(str(checkpoint))
    else:
        commit, found, missing = cached(paths.hf_home, sam3_files(spec, backend))
        if commit is None or not (found or missing):
            missing.insert(0, f"{weights.repo} ({backend} files)")
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
        files=tuple(WeightFile(name, size) for name, size in found.items()),
        vocab_present=vocab_present,
        vocab_path=vocab,
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
    backend: Sam3Implementation | None = None,
) -> WeightsStatus:
    """:func:`weights_status` for ``backend``, by default the one the active environment
    was built for (its install plan's choice)."""
    chosen: Sam3Implementation = backend or planned_backend(active, "meta") or "meta"
    return weights_status(
        settings, spec, backend=chosen, site_packages=active.site_packages if active else None
    )


def planned_backend(
    active: ActiveEnvironment | None, fallback: Sam3Implementation | None = None
) -> Sam3Implementation | None:
    """The SAM 3 implementation that runs for requests that do not name one: the one
    the install plan chose, recorded in the environment (``fallback`` without one)."""
    if active is None:
        return fallback
    recorded = active.record.get("sam3_backend")
    chosen: Sam3Implementation = recorded if recorded in SAM3_IMPLEMENTATIONS else "meta"
    # A plan may choose meta for a GPU that verification then found unusable: the
    # sidecar sends such requests to transformers (geolibre_sidecar.sam3_modes).
    return chosen if active.record.get("cuda_working") else "transformers"


def weights_variables(
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
    backend: Sam3Implementation,
    token: str | None = None,
    site_packages: Path | None = None,
    progress: ProgressSink = discard,
    cancel: CancelToken | None = None,
    checkpoint: Path | None = None,
    python: Path | str | Sequence[str] | None = None,
    python_env: Mapping[str, str] | None = None,
) -> WeightsStatus:
    """Download what ``backend`` needs ahead of time with huggingface_hub, run by
    ``python`` (the model environment's; by default this one; a command line such as
    ``uv run --with ...`` with its variables in ``python_env``), resumably.

    With everything present nothing touches the network.
    """
    weights = spec.weights
    checkpoint = _absolute(checkpoint or settings.checkpoint_path)
    if checkpoint is not None:
        _check_checkpoint(checkpoint, backend, weights.repo)

    def status() -> WeightsStatus:
        return weights_status(
            settings, spec, backend=backend, site_packages=site_packages, checkpoint=checkpoint
        )

    before = status()
    if before.present:
        total = before.total_bytes
        progress(weights_event("SAM 3 weights already present", total, total))
        return before
    try:
        run_hub_runner(settings, [] if checkpoint else [sam3_files(spec, backend)],
                       vocab_items(spec, site_packages), done="SAM 3 weights ready",
                       token=resolve_token(settings, token, settings.paths), progress=progress,
                       cancel=cancel, python=python, python_env=python_env)  # fmt: skip
    except HubOfflineError as exc:
        vocab = vocab_path(spec, site_packages)
        if checkpoint is None or vocab is None:
            raise
        raise HubOfflineError(
            f"Could not reach the Hugging Face Hub at {exc.host} to fetch SAM 3's tokenizer "
            f"vocabulary ({weights.vocab_file}): {exc.reason}.",
            hint="The local checkpoint covers the weights, not the vocabulary: connect once, "
            f"set HF_ENDPOINT to a mirror, or copy {weights.vocab_file} into {vocab.parent}.",
            kind=exc.kind, host=exc.host, reason=exc.reason,
        ) from None  # fmt: skip
    return status()


def sam3_files(spec: ModelEnvSpec, backend: Sam3Implementation) -> RepoFiles:
    """What ``backend`` needs from the SAM 3 repository (transformers: the listing)."""
    files = spec.weights.meta_files if backend == "meta" else None
    return RepoFiles(backend, spec.weights.repo, spec.weights.revision, files,
                     spec.weights.transformers_exclude)  # fmt: skip


def vocab_items(spec: ModelEnvSpec, site_packages: Path | None) -> list[dict[str, Any]]:
    """The runner item that puts SAM 3's vocabulary into the environment, if it lacks it."""
    vocab, weights = vocab_path(spec, site_packages), spec.weights
    if vocab is None or _nonempty_file(vocab):
        return []
    return [{"repo": weights.vocab_repo, "repo_type": weights.vocab_repo_type,
             "revision": "main", "files": [weights.vocab_file], "copy_to": str(vocab)}]  # fmt: skip


def vocab_path(spec: ModelEnvSpec, site_packages: Path | None) -> Path | None:
    """Where samgeo looks for SAM 3's tokenizer vocabulary inside an environment."""
    if site_packages is None:
        return None
    return site_packages / spec.weights.vocab_package_dir / spec.weights.vocab_file


# Small helpers -------------------------------------------------------------------
def _absolute(path: Path | None) -> Path | None:
    # samgeo-api runs in another working directory: relative paths would break there.
    return path.expanduser().absolute() if path is not None else None


def _nonempty_file(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def _check_checkpoint(checkpoint: Path, backend: Sam3Implementation, repo: str) -> None:
    if backend != "meta":
        raise WeightsError(
            "A local SAM 3 checkpoint serves the meta backend only; the transformers "
            f"backend needs the {repo} repository files.",
            hint="Unset SAM3_CHECKPOINT_PATH and fetch them with a Hub token, "
            "or use the meta backend (it needs an NVIDIA GPU).",
        )
    if (problem := _checkpoint_problem(checkpoint)) is not None:
        raise WeightsError(
            f"The SAM 3 checkpoint {checkpoint} {problem}.",
            hint="Point --checkpoint / SAM3_CHECKPOINT_PATH at a readable sam3.pt.",
        )


def _checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` cannot be the checkpoint, or None."""
    if not path.is_file():
        return "is not a file" if path.exists() else "does not exist"
    try:
        with path.open("rb") as handle:
            return None if handle.read(1) else "is empty"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
