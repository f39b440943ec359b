"""The SAM 3 weights of the environment the sidecar installed: for ``/ml/status``
(``available`` only with them on disk) and to refuse at once a request that
could only fail on them, instead of forwarding it to a samgeo-api that would
spend 23 s on the Hub's retries before saying so in a library's words.

Only the managed environment is checked: a server given by command or URL has
its own disk. A verdict is a few ``stat`` calls and two small JSON files, kept
for TTL_S so a burst of status polls and requests reads the disk once; an
install forgets it at once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import cast

from geolibre_env.backend import ExitCause
from geolibre_env.errors import GeoLibreError
from geolibre_env.model_env import ActiveEnvironment, active_environment
from geolibre_env.spec import SAM3_IMPLEMENTATIONS, ModelEnvSpec, Sam3Implementation, load_spec
from geolibre_env.weights import (
    NOT_CHECKED_CMD,
    OTHER_MODELS,
    WeightsVerdict,
    install_call,
    install_command,
    model_weights,
    planned_backend,
    weights_verdict,
)

from geolibre_sidecar.errors import BackendUnavailable
from geolibre_sidecar.settings import SidecarSettings

TTL_S = 1.0
# samgeo-api 1.4.2 builds SAM 3's meta implementation for these, whatever is asked.
META_ONLY_MODES = ("automatic", "predict")


class WeightsGate:
    """The weights verdicts of the managed environment, and the refusals they imply."""

    def __init__(self, settings: SidecarSettings) -> None:
        self.settings = settings
        self._cache: dict[Sam3Implementation | None, tuple[float, WeightsVerdict | None]] = {}
        self._spec: ModelEnvSpec | None = None  # parsing it costs more than the look

    @property
    def applies(self) -> bool:
        """Whether the backend the sidecar runs is the managed environment's."""
        return not (self.settings.samgeo_cmd or self.settings.samgeo_url)

    def _active(self) -> ActiveEnvironment | None:
        return active_environment(self.settings.env.paths) if self.applies else None

    def note(self) -> str | None:
        """Why the weights are not checked, when they are not."""
        if self.settings.samgeo_url:
            return None  # status words the external case itself
        if self.settings.samgeo_cmd or self._active() is None:
            return NOT_CHECKED_CMD
        return None

    def verdict(self, backend: Sam3Implementation | None = None) -> WeightsVerdict | None:
        """The weights of ``backend`` (default: the plan's choice); None: not ours to check."""
        now = time.monotonic()
        cached = self._cache.get(backend)
        if cached is not None and now - cached[0] < TTL_S:
            return cached[1]
        active = self._active()
        result = None
        if active is not None:
            chosen = backend or planned_backend(active, "meta")
            result = weights_verdict(self.settings.env, active, backend=chosen, spec=self._load())
        self._cache[backend] = (now, result)
        return result

    def forget(self) -> None:
        self._cache.clear()

    def refusal(self, mode: str, fields: Mapping[str, str] | None) -> BackendUnavailable | None:
        """The immediate 503 for a request that could only fail on missing weights.

        ``fields`` None: before the body is read (text mode only, where every
        implementation that could run is checked); then again with the fields, for
        the implementation and model the request really uses. A model we do not
        install by default (SAM 1 or 2) is never refused here; another SAM 3 checkpoint
        (facebook/sam3.1) is, while its weights are not on disk.
        """
        if not self.applies:
            return None
        if fields is None:
            return self._refusal_before_body(mode)
        version = (fields.get("model_version") or "sam3").strip()
        model_id = (fields.get("model_id") or "").strip()
        if version == "sam3" and model_id in OTHER_MODELS:
            return self._missing_model(model_id)
        if version != "sam3" or model_id not in ("", self._repo()):
            return None
        asked = (fields.get("backend") or "").strip()
        backend: Sam3Implementation | None = None  # the plan's choice
        if mode in META_ONLY_MODES:
            backend = "meta"
        elif asked in SAM3_IMPLEMENTATIONS:
            backend = cast(Sam3Implementation, asked)
        return _refuse(self.verdict(backend))

    def _refusal_before_body(self, mode: str) -> BackendUnavailable | None:
        if mode != "text":  # model_version may name SAM 1 or 2: wait for the fields
            return None
        active = self._active()
        if active is None:
            return None
        candidates: tuple[Sam3Implementation, ...] = ("transformers",)
        if active.record.get("cuda_working"):
            if self._other_checkpoint_cached():
                return None
            candidates = ("meta", "transformers")
        if all(_refuse(self.verdict(backend)) for backend in candidates):
            return _refuse(self.verdict())
        return None

    def _missing_model(self, model_id: str) -> BackendUnavailable | None:
        """The 503 for another SAM 3 checkpoint that is not on disk: with
        ``HF_HUB_OFFLINE=1`` samgeo-api could only fail on it, so say how to fetch it."""
        spec = self._load()
        if self._active() is None or spec is None:
            return None
        if model_weights(self.settings.env, spec, model_id).present:
            return None
        return BackendUnavailable(
            f"The weights of {model_id} are not on this computer, so a segmentation with it "
            "cannot run.",
            hint=f"Fetch them with `{install_command(model_id)}` or from the app with "
            f"`{install_call(model_id)}` (its licence must be accepted on the Hugging Face "
            "Hub, as for facebook/sam3), then retry.",
            cause=ExitCause.WEIGHTS_MISSING.value,
        )

    def _load(self) -> ModelEnvSpec | None:
        """The spec, read once (None while unreadable: the verdict then says why)."""
        if self._spec is None:
            with contextlib.suppress(GeoLibreError):
                self._spec = load_spec(self.settings.env.spec_path)
        return self._spec

    def _repo(self) -> str:
        spec = self._load()
        return spec.weights.repo if spec is not None else "facebook/sam3"

    def _other_checkpoint_cached(self) -> bool:
        hub = self.settings.env.paths.hf_home / "hub"
        return any((hub / f"models--{repo.replace('/', '--')}").is_dir() for repo in OTHER_MODELS)


def _refuse(verdict: WeightsVerdict | None) -> BackendUnavailable | None:
    """The 503 when the weights are known to be missing (never on a failed look)."""
    if verdict is None or verdict.status is None or verdict.present:
        return None
    return BackendUnavailable(
        verdict.reason or "The SAM 3 weights are missing.",
        hint=verdict.hint,
        cause=ExitCause.WEIGHTS_MISSING.value,
    )
