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
from geolibre_env.weights.hub_cache import RepoCache
from geolibre_env.weights.hub_fetch import ByteMeter, run_hub_runner
from geolibre_env.weights.sam3 import resolve_token, vocab_path

# Not in the spec file: adding them there would change every environment's plan hash.
OTHER_MODELS: dict[str, tuple[str, ...]] = {
    "facebook/sam3.1": ("config.json", "sam3.1_multiplex.pt"),
}
MODEL_REVISION = "main"


def install_command(model_id: str) -> str:
    """The exact command that fetches ``model_id``'s weights."""
    return f"geolibre-ml install --model {model_id}"


@dataclass(frozen=True)
class ModelWeights:
    """Whether one extra model's files are in the Hub cache (disk only, no network)."""

    model_id: str
    present: bool
    missing: tuple[str, ...]


def check_model(spec: ModelEnvSpec, model_id: str) -> tuple[str, ...]:
    """The files ``model_id`` needs; ConfigError for a model we cannot fetch."""
    files = OTHER_MODELS.get(model_id)
    if files is None:
        known = ", ".join([spec.weights.repo, *OTHER_MODELS])
        raise ConfigError(f"Unknown model {model_id!r}.", hint=f"Choose one of: {known}.")
    return files


def model_weights(settings: EnvSettings, spec: ModelEnvSpec, model_id: str) -> ModelWeights:
    """What is on disk for ``model_id``."""
    files = check_model(spec, model_id)
    cache = RepoCache(settings.paths.hf_home / "hub", model_id)
    commit = cache.commit_for(MODEL_REVISION)
    missing = tuple(
        name for name in files if commit is None or not cache.pointer(commit, name).is_file()
    )
    return ModelWeights(model_id, not missing, missing)


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
    files = check_model(spec, model_id)
    meter = ByteMeter(progress)
    items: list[dict[str, object]] = []
    if not model_weights(settings, spec, model_id).present:
        items.append({"repo": model_id, "revision": MODEL_REVISION, "files": list(files)})
    vocab = vocab_path(spec, site_packages)
    if vocab is not None and not vocab.is_file():
        weights = spec.weights
        items.append({"repo": weights.vocab_repo, "repo_type": weights.vocab_repo_type,
                      "revision": "main", "files": [weights.vocab_file],
                      "copy_to": str(vocab)})  # fmt: skip
    token = resolve_token(settings, token, settings.paths)
    run_hub_runner(settings, items, token=token, meter=meter, cancel=cancel, python=python,
                   repo=model_id)  # fmt: skip
    meter.finish(f"{model_id} weights ready")
    return model_weights(settings, spec, model_id)
