"""Whether a segmentation can succeed now: one answer for ``/ml/status``, the
doctor (CLI and ``/ml/diagnostics``) and ``geolibre-ml status``.

Two things must hold: a samgeo-api answers, and the weights of the SAM 3
implementation that will run are on disk. That implementation is the one the
install plan chose (recorded in the environment at install time), and the
weights are looked for where that environment's samgeo-api reads them. Only
the managed environment can be looked at: a server given by URL or by command
keeps its disk to itself, and the answer says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from geolibre_env.errors import GeoLibreError
from geolibre_env.model_env import ActiveEnvironment
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec, Sam3Implementation, load_spec
from geolibre_env.weights.models import (
    OTHER_MODELS,
    ModelWeights,
    install_command,
    model_weights,
)
from geolibre_env.weights.sam3 import WeightsStatus, active_weights_status, planned_backend

INSTALL_IN_APP = "press Install in the app's ML settings"
# How the supervisor names a launch from the managed environment (LaunchSpec.source).
MANAGED_SOURCE = "the managed model environment"
FOREIGN_SOURCES = ("GEOLIBRE_ML_SAMGEO_CMD", "samgeo-api on PATH")
NOT_CHECKED_URL = (
    "The sidecar cannot see that server's disk, so whether its SAM 3 weights are in place "
    "shows only when a segmentation runs."
)
NOT_CHECKED_CMD = (
    "It runs from its own environment (GEOLIBRE_ML_SAMGEO_CMD or samgeo-api on PATH), whose "
    "SAM 3 weights the sidecar does not check: the first segmentation tells."
)


@dataclass(frozen=True)
class WeightsVerdict:
    """What the weights of one SAM 3 implementation mean for segmentation."""

    backend: Sam3Implementation
    status: WeightsStatus | None  # None: they could not be looked at (see ``error``)
    error: str | None = None
    # The other SAM 3 checkpoints samgeo-api offers, and whether meta (their only
    # implementation) runs here.
    others: tuple[ModelWeights, ...] = ()
    meta_runs: bool | None = None

    @property
    def present(self) -> bool:
        return self.status is not None and self.status.present

    @property
    def reason(self) -> str | None:
        """Why a segmentation cannot succeed, in one sentence; None when they are there."""
        if self.status is None:
            return f"The SAM 3 weights could not be checked: {_clause(self.error or '')}."
        if self.status.present:
            return None
        vocab = self.status.missing == (_vocab_name(self.status),)
        if vocab:
            return (
                f"SAM 3's tokenizer vocabulary ({self.status.missing[0]}) is missing from the "
                "model environment, so a segmentation cannot run."
            )
        names = [_readable(name, self.status) for name in self.status.missing]
        return (
            f"The SAM 3 weights for the {self.backend} implementation are missing "
            f"({_short_list(names)}), so a segmentation cannot run."
        )

    @property
    def hint(self) -> str | None:
        """The next step, with the exact command and the app's route."""
        if self.status is None:
            return "Run `geolibre-ml doctor` to see what is wrong with the install."
        if self.status.present:
            return None
        checkpoint = (
            " (or use a local checkpoint: `geolibre-ml install --checkpoint /path/to/sam3.pt`)"
            if self.backend == "meta"
            else ""
        )
        if self.status.token_configured:
            return (
                "Install them: run `geolibre-ml install` (your Hub token is already configured), "
                f"or {INSTALL_IN_APP}{checkpoint}."
            )
        # No "token:" before a word: the log redaction would take that word for a secret.
        return (
            "Accept the licence for facebook/sam3 on the Hugging Face Hub, then install them "
            "with your Hub token by running `geolibre-ml install --ask-token`, or "
            f"{INSTALL_IN_APP} and give the token{checkpoint}."
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``weights`` block of ``/ml/status``: no secrets, no paths."""
        status = self.status
        return {
            "present": self.present,
            "backend": self.backend,
            "route": status.route if status else None,
            "missing": list(status.missing) if status else [],
            "token_configured": status.token_configured if status else None,
            "reason": self.reason,
            "hint": self.hint,
            "models": self.models(),
        }

    def models(self) -> dict[str, dict[str, Any]]:
        """Per SAM 3 checkpoint the app can pick: on disk, runs here, the command that
        fetches it."""
        repo = self.status.repo if self.status else "facebook/sam3"
        models = {repo: {"present": self.present, "runs_here": True,
                         "fetch": "geolibre-ml install"}}  # fmt: skip
        for other in self.others:
            models[other.model_id] = {"present": other.present, "runs_here": self.meta_runs,
                                      "fetch": install_command(other.model_id)}  # fmt: skip
        return models


def weights_verdict(
    settings: EnvSettings,
    active: ActiveEnvironment | None,
    *,
    backend: Sam3Implementation | None = None,
    spec: ModelEnvSpec | None = None,
) -> WeightsVerdict:
    """The weights for ``backend`` (default: the plan's choice) in the active environment."""
    chosen = backend or planned_backend(active, "meta") or "meta"
    try:
        spec = spec or load_spec(settings.spec_path)
        status = active_weights_status(settings, spec, active, backend=chosen)
        others = tuple(model_weights(settings, spec, model) for model in OTHER_MODELS)
    except GeoLibreError as exc:
        return WeightsVerdict(chosen, None, exc.message)
    meta_runs = bool(active.record.get("cuda_working")) if active is not None else None
    return WeightsVerdict(chosen, status, others=others, meta_runs=meta_runs)


@dataclass(frozen=True)
class Availability:
    """``available`` of ``/ml/status``, with why not and what to do."""

    available: bool
    reason: str | None = None
    hint: str | None = None


def segmentation_availability(answering: bool, weights: WeightsVerdict | None) -> Availability:
    """A segmentation can succeed now: a backend answers and (where we can look) the
    weights of the implementation that will run are on disk. ``weights`` None: not
    ours to check. Missing weights come first: starting the backend would not help."""
    if weights is not None and not weights.present:
        return Availability(False, weights.reason, weights.hint)
    return Availability(answering)


def _clause(text: str) -> str:
    """``text`` ready to sit inside a sentence: no trailing full stop."""
    return text.strip().rstrip(".")


def _short_list(names: list[str], limit: int = 3) -> str:
    if len(names) > limit:
        return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
    return " and ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + f" and {names[-1]}"


def _readable(name: str, status: WeightsStatus) -> str:
    """A missing item in words: the whole repository, the vocabulary, or a file."""
    if name == _vocab_name(status):
        return "the tokenizer vocabulary"
    if name.startswith(f"{status.repo} ("):  # nothing of the repository is here yet
        return f"the {status.repo} files"
    return name


def _vocab_name(status: WeightsStatus) -> str | None:
    return status.vocab_path.name if status.vocab_path is not None else None
