"""`geolibre-ml status`: what is installed, whether the weights are there, and what
the sidecar's supervisor last said, read from the files they keep (no network).
"""

from __future__ import annotations

import time
from typing import Any

import psutil

from geolibre_env.backend_record import read_status
from geolibre_env.errors import GeoLibreError
from geolibre_env.install_lock import InstallLock
from geolibre_env.model_env import active_environment
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import load_spec
from geolibre_env.weights import active_weights_status


def collect_status(settings: EnvSettings) -> dict[str, Any]:
    paths = settings.paths
    active = active_environment(paths)
    env: dict[str, Any] | None = None
    weights: dict[str, Any] | None = None
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
        try:
            spec = load_spec(settings.spec_path)
            weights = active_weights_status(settings, spec, active).to_dict()
        except GeoLibreError as exc:
            weights = {"error": str(exc)}
    backend = read_status(paths.supervisor_status)
    if backend is not None and not psutil.pid_exists(int(backend.get("sidecar_pid") or 0)):
        backend = {"state": "stopped", "cause": "no sidecar is running", "previous": backend}
    holder = InstallLock(paths.install_lock).holder()
    install = (
        {"running": True, **holder}
        if holder and psutil.pid_exists(int(holder.get("pid") or 0))
        else {"running": False}
    )
    return {
        "installed": active is not None,
        "environment": env,
        "weights": weights,
        "backend": backend or {"state": "stopped", "cause": "no sidecar has run yet"},
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
    if weights.get("present"):
        lines.append(f"Weights: present ({weights.get('total_bytes', 0) / 1e9:.2f} GB)")
    elif env:
        missing = ", ".join(weights.get("missing") or []) or weights.get("error", "unknown")
        lines.append(f"Weights: missing ({missing})")
    backend = data.get("backend") or {}
    since = backend.get("since")
    ago = f", {int(time.time() - since)} s ago" if isinstance(since, int | float) else ""
    lines.append(f"Backend: {backend.get('state')} ({backend.get('cause')}{ago})")
    last = backend.get("last_exit") or {}
    if last.get("summary") and backend.get("state") != "ready":
        lines.append(f"  last exit: {last['summary']}")
        if last.get("hint"):
            lines.append(f"  what to do: {last['hint']}")
    install = data.get("install") or {}
    if install.get("running"):
        lines.append(f"Install: running (pid {install.get('pid')})")
    return "\n".join(lines)
