"""`geolibre-ml status`: what is installed, whether the weights are there, and what
the sidecar's supervisor last said, read from the files they keep (no network).
"""

from __future__ import annotations

import time
from typing import Any

import psutil

from geolibre_env.backend.record import extra_backend_statuses, read_status
from geolibre_env.install.lock import InstallLock
from geolibre_env.model_env import active_environment
from geolibre_env.settings import EnvSettings
from geolibre_env.weights.availability import (
    FOREIGN_SOURCES,
    WeightsVerdict,
    segmentation_availability,
    weights_verdict,
)


def collect_status(settings: EnvSettings) -> dict[str, Any]:
    paths = settings.paths
    active = active_environment(paths)
    env: dict[str, Any] | None = None
    weights: dict[str, Any] | None = None
    verdict: WeightsVerdict | None = None
    if active is not None:
        verify = active.verify
        env = {
            "name": active.name,
            "path": str(active.root),
            "build": active.build,
            "python": verify.get("python"),
            "torch": verify.get("torch"),
            "cuda_version": verify.get("cuda_version"),
            "cuda_working": active.record.get("cuda_working"),
            "sam3_backend": active.record.get("sam3_backend"),
            "created_at": active.record.get("created_at"),
        }
        verdict = weights_verdict(settings, active)
        weights = {
            **(verdict.status.to_dict() if verdict.status is not None else {}),
            "backend": verdict.backend,
            "present": verdict.present,
            "reason": verdict.reason,
            "hint": verdict.hint,
        }
    backend = read_status(paths.supervisor_status)
    if backend is not None and not psutil.pid_exists(int(backend.get("sidecar_pid") or 0)):
        backend = {"state": "stopped", "cause": "no sidecar is running", "previous": backend}
    answering = bool(backend) and backend.get("state") in ("ready", "busy")
    source = (backend or {}).get("command_source")
    # A backend the sidecar runs from another command reads other weights than ours.
    ours = source not in FOREIGN_SOURCES
    can = segmentation_availability(answering, verdict if ours else None)
    holder = InstallLock(paths.install_lock).holder()
    install = (
        {"running": True, **holder}
        if holder and psutil.pid_exists(int(holder.get("pid") or 0))
        else {"running": False}
    )
    return {
        "available": can.available,
        "installed": active is not None,
        "environment": env,
        "weights": weights,
        "backend": backend or {"state": "stopped", "cause": "no sidecar has run yet"},
        "gpu_backends": extra_backend_statuses(paths),
        "install": install,
    }


def format_status(data: dict[str, Any]) -> str:
    lines = []
    env = data.get("environment")
    if env:
        cuda = "CUDA working" if env.get("cuda_working") else "no CUDA"
        lines.append(
            f"Model environment: {env['name']} (torch {env.get('torch')}, {env.get('build')} "
            f"build, {cuda}, SAM 3 backend {env.get('sam3_backend')})"
        )
    else:
        lines.append("Model environment: not installed (run `geolibre-ml install`)")
    weights = data.get("weights") or {}
    implementation = f" for the {weights.get('backend')} implementation" if env else ""
    if weights.get("present"):
        size = f"{weights.get('total_bytes', 0) / 1e9:.2f} GB"
        lines.append(f"Weights: present{implementation} ({size})")
    elif env:
        lines.append(f"Weights: missing{implementation}. {weights.get('reason')}")
        lines.append(f"  what to do: {weights.get('hint')}")
    backend = data.get("backend") or {}
    for each in (backend, *data.get("gpu_backends", ())):
        since = each.get("since")
        ago = f", {int(time.time() - since)} s ago" if isinstance(since, int | float) else ""
        cause = str(each.get("cause") or "").strip().rstrip(".")
        name = f"Backend {each['name']}" if each.get("name") else "Backend"
        device = f" on GPU {each['device']}" if each.get("device") else ""
        lines.append(f"{name}{device}: {each.get('state')} ({cause}{ago})")
    last = backend.get("last_exit") or {}
    if last.get("summary") and backend.get("state") != "ready":
        lines.append(f"  last exit: {last['summary']}")
        if last.get("hint"):
            lines.append(f"  what to do: {last['hint']}")
    install = data.get("install") or {}
    if install.get("running"):
        lines.append(f"Install: running (pid {install.get('pid')})")
    lines.append(
        "Segmentation: possible now."
        if data.get("available")
        else "Segmentation: not possible now (see above; `geolibre-ml doctor` tells more)."
    )
    return "\n".join(lines)
