"""SAM 3 checkpoints other than the one the install fetches: what each needs, whether
it is on disk, and fetching it on request (``geolibre-ml install --model``).

samgeo-api's ``/models`` offers ``facebook/sam3.1`` next to ``facebook/sam3``;
samgeo 1.4.2 (``samgeo3.py``) loads it with ``hf_hub_download`` of ``config.json``
and ``sam3.1_multiplex.pt``, for its ``meta`` implementation only (so CUDA only).
With ``HF_HUB_OFFLINE=1`` a missing one must be fetched here first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from geolibre_env.errors import ConfigError
from geolibre_env.progress import CancelToken, ProgressSink, discard
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec
from geolibre_env.weights.hub_cache import RepoFiles, cached
from geolibre_env.weights.hub_fetch import run_hub_runner
from geolibre_env.weights.sam3 import resolve_token, vocab_items

# Not in the spec file: adding them there would change every environment's plan hash.
OTHER_MODELS: dict[str, tuple[str, ...]] = {
    "facebook/sam3.1": ("config.json", "sam3.1_multiplex.pt"),
}


def install_command(model_id: str) -> str:
    """The exact command that fetches ``model_id``'s weights."""
    return f"geolibre-ml install --model {model_id}"


def install_call(model_id: str) -> str:
    """The app's way to fetch them: the sidecar's install API (the same installer)."""
    return f'POST /ml/backend/install {{"model": "{model_id}"}}'


def known_models(spec: ModelEnvSpec) -> tuple[str, ...]:
    """Every model whose weights the install can fetch."""
    return (spec.weights.repo, *OTHER_MODELS)


@dataclass(frozen=True)
class ModelWeights:
    """Whether one extra model's files are in the Hub cache (disk only, no network)."""

    model_id: str
    present: bool
    missing: tuple[str, ...]


def check_model(spec: ModelEnvSpec, model_id: str) -> RepoFiles:
    """What ``model_id`` needs; ConfigError for a model we cannot fetch."""
    files = OTHER_MODELS.get(model_id)
    if files is None:
        known = ", ".join(known_models(spec))
        raise ConfigError(f"Unknown model {model_id!r}.", hint=f"Choose one of: {known}.")
    return RepoFiles(model_id, model_id, "main", files)


def model_weights(settings: EnvSettings, spec: ModelEnvSpec, model_id: str) -> ModelWeights:
    """What is on disk for ``model_id``."""
    _, _, missing = cached(settings.paths.hf_home, check_model(spec, model_id))
    return ModelWeights(model_id, not missing, tuple(missing))


def fetch_model(
    settings: EnvSettings,
    spec: ModelEnvSpec,
    model_id: str,
    *,
    token: str | None = None,
    site_packages: Path | None = None,
    progress: ProgressSink = discard,
    cancel: CancelToken | None = None,
    python: Path | str | None = None,
) -> ModelWeights:
    """Download ``model_id``'s files (and the vocabulary its code reads) with the runner."""
    want = check_model(spec, model_id)
    wants = [] if model_weights(settings, spec, model_id).present else [want]
    run_hub_runner(settings, wants, vocab_items(spec, site_packages),
                   done=f"{model_id} weights ready", token=resolve_token(settings, token,
                   settings.paths), progress=progress, cancel=cancel, python=python)  # fmt: skip
    return model_weights(settings, spec, model_id)
