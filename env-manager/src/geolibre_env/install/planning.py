"""The plan for this computer as the installer makes it: what is installed already
(never downgraded; its Python reused), and the hash that says when a build differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from geolibre_env.install import source_check
from geolibre_env.install.plan import InstallPlan, make_plan, source_targets
from geolibre_env.install.sources import sources_local
from geolibre_env.machine.detect import PythonInstall, detect_machine
from geolibre_env.machine.torch_build import ExistingEnv
from geolibre_env.model_env import ActiveEnvironment, active_environment
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec
from geolibre_env.uv.runner import UvTool

__all__ = ["existing_env", "make_install_plan", "plan_hash"]


def plan_hash(plan: InstallPlan) -> str:
    """Changes whenever the environment a plan describes would differ."""
    key = {
        "spec": plan.spec_fingerprint,
        "build": plan.torch_build.name,
        "torch": plan.torch_requirements,
        "index": plan.torch_index_url,
        "python": plan.python.path if plan.python else None,
        "requirements": plan.requirements,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def existing_env(active: ActiveEnvironment | None) -> ExistingEnv | None:
    """What the planner must not downgrade: the verified environment in use."""
    if active is None:
        return None
    verify = active.verify
    return ExistingEnv(
        build=str(active.build or "cpu"),
        torch_version=str(verify.get("torch") or ""),
        cuda_working=bool(active.record.get("cuda_working")),
        gpu_names=tuple(d.get("name", "") for d in verify.get("devices") or []),
    )


def make_install_plan(
    settings: EnvSettings,
    spec: ModelEnvSpec,
    *,
    uv: UvTool,
    backend: str | None = None,
    build: str | None = None,
    python_minor: str | None = None,
    check_sources: bool = False,
) -> InstallPlan:
    """The plan for this computer; ``python_minor`` keeps only that Python (a bundle's).

    ``check_sources`` asks each source the plan names whether it answers (about
    two seconds at most), so a dead route is named before anything is downloaded.
    """
    active = active_environment(settings.paths)
    known = _known_python(active)
    machine = detect_machine(settings, uv=uv, pythons=known)
    if python_minor is not None:
        if known and not any(p.minor == python_minor for p in known):
            machine = detect_machine(settings, uv=uv)  # the active env's Python is another
        pythons = tuple(p for p in machine.pythons if p.minor == python_minor)
        machine = dataclasses.replace(machine, pythons=pythons)
    existing = existing_env(active)
    answers = None
    if check_sources:
        targets = source_targets(machine, spec, settings, existing=existing, build=build)
        if sources_local(settings):  # uv works offline: only the weights come from afar
            targets = [(role, url) for role, url in targets if role == "weights"]
        answers = source_check.check_sources(settings, targets)
    return make_plan(
        machine, spec, settings, existing=existing, backend=backend, build=build,  # type: ignore[arg-type]
        answers=answers,
    )  # fmt: skip


def _known_python(active: ActiveEnvironment | None) -> tuple[PythonInstall, ...] | None:
    """The interpreter the active environment was built from, if it still exists:
    re-planning with it keeps the plan (and its hash) stable and skips discovery."""
    if active is None:
        return None
    path, version = active.record.get("python_path"), active.record.get("python")
    if path and version and Path(path).exists():
        return (PythonInstall(version=version, path=path),)
    return None
