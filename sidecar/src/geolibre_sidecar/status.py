"""``GET /ml/status``: GeoLibre's keys plus state, backend, install, accelerator
and hints. Built only from what the sidecar already knows (no probe on the
request path), so it answers fast while samgeo-api is blocked in inference.

``available`` means a segmentation can succeed now: the backend answers and the
weights of the SAM 3 implementation that will run are on disk
(:func:`geolibre_env.weights.availability.segmentation_availability`, the doctor's rule too).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from geolibre_env.backend import HINTS, ExitCause
from geolibre_env.model_env import active_environment
from geolibre_env.weights import WeightsVerdict, segmentation_availability

from geolibre_sidecar import __version__
from geolibre_sidecar.backend import Backend
from geolibre_sidecar.settings import SidecarSettings

INSTALL_HINT = (
    "Install the model backend: press Install in the app's ML settings, or run "
    "`geolibre-ml install` in a terminal."
)
START_HINT = "It starts with the first segmentation request, or press Start server."


@dataclass
class StatusSources:
    """Everything status reads; optional parts are filled in as features start up."""

    settings: SidecarSettings
    backend: Backend
    started_at: float = field(default_factory=time.time)
    install: Any = None  # geolibre_sidecar.install_api.InstallJobs
    environment: Any = None  # geolibre_sidecar.environment_info.EnvironmentInfo
    sam3: Any = None  # geolibre_sidecar.sam3_modes.Sam3Policy
    proxy: Any = None  # geolibre_sidecar.proxy.SegmentProxy
    jobs: Any = None  # geolibre_sidecar.jobs.manager.JobManager


def _installed(sources: StatusSources) -> bool:
    settings = sources.settings
    if settings.samgeo_cmd or settings.samgeo_url:
        return True
    return active_environment(settings.env.paths) is not None


def build_status(sources: StatusSources) -> dict[str, Any]:
    backend, settings = sources.backend, sources.settings
    snapshot = backend.snapshot()
    if sources.proxy is not None:
        # Ours, not samgeo-api's: requests whose client left while the backend still
        # computes them; they keep their in-flight slots until it finishes.
        snapshot = {**snapshot, "abandoned": sources.proxy.abandoned}
    state = backend.state
    available = backend.available  # it answers: enough for url, version and models
    hints: list[str] = []
    install = sources.install.snapshot() if sources.install is not None else None
    installing = bool(install and install.get("running"))
    installed = _installed(sources)
    last_exit = snapshot.get("last_exit") or {}

    if available:
        version = backend.health.version
        if state == "busy":
            count = snapshot.get("in_flight", 0)
            message = f"samgeo-api is working on {count} request(s); new ones wait their turn."
        else:
            message = f"samgeo-api {version or ''} is ready.".replace("  ", " ")
    elif state == "external":
        message = (
            f"The samgeo-api at {backend.public_url} is not answering "
            f"({backend.health.last_error or 'no answer yet'})."
        )
        hints.append(
            "Start that server, or unset GEOLIBRE_ML_SAMGEO_URL so the sidecar runs its own."
        )
    elif installing:
        message = "The model backend is being installed."
    elif state == "starting":
        message = (
            "The model backend is starting (about 15 s; loading a model the first time "
            "takes longer)."
        )
    elif state in ("restarting", "failed"):
        message = str(snapshot.get("cause") or last_exit.get("summary") or "The backend failed.")
        if last_exit.get("hint"):
            hints.append(last_exit["hint"])
        if state == "failed":
            hints.append("Press Start server to try again once the cause is fixed.")
    elif not installed:
        message = "The model backend is not installed."
        hints.append(INSTALL_HINT)
    else:
        cause = last_exit.get("cause")
        message = (
            last_exit.get("summary", "The model backend is not running.")
            if cause in (ExitCause.IDLE_UNLOADED.value,)
            else "The model backend is not running."
        )
        hints.append(START_HINT)

    weights = backend.weights() if installed else None
    verdict = segmentation_availability(available, weights)
    if weights is not None and not weights.present and not installing:
        # Starting the backend would not help: the weights are the first thing to fix.
        message = (
            f"{message} {verdict.reason}"
            if state in ("restarting", "failed")
            else (verdict.reason or message)
        )
        hints = [h for h in hints if h != START_HINT]
        hints.insert(0, verdict.hint or INSTALL_HINT)
    note = backend.weights_note() if installed else None
    if available and note:
        message = f"{message} {note}"
    error = backend.last_request_error
    if error and error.get("cause"):
        hint = HINTS[ExitCause(error["cause"])]
        if hint not in hints:
            hints.append(f"The last segmentation failed: {hint}")
    facts = sources.environment.snapshot() if sources.environment is not None else None
    accelerator = (facts or {}).get("accelerator")
    if accelerator and accelerator.get("hint"):
        hints.append(accelerator["hint"])
    if installing and install:
        hints.append(f"Install in progress: {install.get('message') or install.get('phase')}.")

    return {
        # GeoLibre's keys first: the app's front end reads these.
        "available": verdict.available,
        "default_model": settings.default_model,
        "message": message,
        **(_answering(backend) if available else {}),
        # Ours.
        "state": "installing" if installing and not available else state,
        "installed": installed,
        "backend": snapshot,
        "install": install,
        "accelerator": accelerator,
        "weights": _weights_block(weights, note),
        "hints": hints,
        "loaded_models": _samgeo_models(backend).get("loaded") if available else None,
        "modes": sources.sam3.current().modes() if sources.sam3 is not None else None,
        "jobs": sources.jobs.status() if sources.jobs is not None else None,
        "sidecar": {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - sources.started_at, 1),
        },
    }


def _samgeo_models(backend: Backend) -> dict[str, Any]:
    """samgeo-api's last ``/models`` answer (fetched at start and after a cache clear)."""
    models = backend.health.models
    return models if isinstance(models, dict) else {}


def _answering(backend: Backend) -> dict[str, Any]:
    """GeoLibre's optional keys, present only while the backend answers, as its own
    sidecar sends them: ``models`` is the inner object of samgeo-api's ``/models``
    (version -> model ids), which the app types as ``Record<string, string[]>``."""
    keys = {
        "url": backend.public_url,
        "version": backend.health.version,
        "models": _samgeo_models(backend).get("models"),
    }
    return {key: value for key, value in keys.items() if value is not None}


def _weights_block(weights: WeightsVerdict | None, note: str | None) -> dict[str, Any] | None:
    """The weights of the implementation that will run; ``checked: false`` (and why)
    for a backend whose disk the sidecar cannot see; None before an install."""
    if weights is not None:
        return {**weights.to_dict(), "checked": True}
    if note is None:
        return None
    return {"present": None, "checked": False, "reason": note, "hint": None}
