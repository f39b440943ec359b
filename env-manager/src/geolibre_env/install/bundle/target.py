"""The computer a bundle is for: this one, or one described by ``--os/--arch/--python``,
and the install plan made for it."""

from __future__ import annotations

import platform
from dataclasses import dataclass, replace
from typing import Any

from geolibre_env.errors import ConfigError, InstallError
from geolibre_env.install.plan import InstallPlan, make_plan
from geolibre_env.machine.detect import (
    Machine,
    PythonInstall,
    detect_machine,
    normalize_arch,
    os_name,
)
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec, Sam3Implementation
from geolibre_env.uv.runner import UvTool

TARGET_PYTHON = "(the target computer's Python)"
# uv's names for the platforms PyTorch publishes wheels for (torch 2.14's Linux
# wheels are manylinux_2_28).
UV_PLATFORMS = {
    ("linux", "x86_64"): "x86_64-manylinux_2_28",
    ("linux", "arm64"): "aarch64-manylinux_2_28",
    ("windows", "x86_64"): "x86_64-pc-windows-msvc",
    ("windows", "arm64"): "aarch64-pc-windows-msvc",
    ("macos", "arm64"): "aarch64-apple-darwin",
    ("macos", "x86_64"): "x86_64-apple-darwin",
}


@dataclass(frozen=True)
class ExportTarget:
    """The computer the bundle is for; unset fields mean "like this one"."""

    os: str | None = None
    arch: str | None = None
    python: str | None = None  # "3.12"
    build: str | None = None  # "cpu", "cu126", ...
    backend: Sam3Implementation | None = None


def target_machine(
    settings: EnvSettings, spec: ModelEnvSpec, uv: UvTool, target: ExportTarget
) -> tuple[Machine, bool]:
    """This computer (``True``), or a described one, as the planner sees it."""
    local = (os_name(platform.system()), normalize_arch(platform.machine()))
    system, arch = target.os or local[0], target.arch or local[1]
    if (system, arch) not in UV_PLATFORMS:
        known = ", ".join(f"--os {o} --arch {a}" for o, a in UV_PLATFORMS)
        raise ConfigError(f"There are no wheels for {system} {arch}.", hint=f"Use one of {known}.")
    chosen = (PythonInstall(version=target.python, path=TARGET_PYTHON),) if target.python else ()
    if (system, arch) == local:
        here = detect_machine(settings, uv=uv, pythons=chosen or None)
        # Disk figures are the target's business: this computer only writes the file.
        return replace(here, disks=()), True
    machine = Machine(
        os=system,
        arch=arch,
        cpu_count=None,
        memory_total_bytes=None,
        gpus=(),
        driver_version=None,
        driver_source=None,
        # Another computer: its GPU cannot be checked from here, only trusted (--build).
        nvidia_smi_error="not checked: the bundle is for another computer",
        apple_silicon=system == "macos" and arch == "arm64",
        # Without --python: the spec's first choice.
        pythons=chosen or (PythonInstall(version=spec.pythons[0], path=TARGET_PYTHON),),
        disks=(),
    )
    return machine, False


def target_plan(
    settings: EnvSettings, spec: ModelEnvSpec, uv: UvTool, target: ExportTarget
) -> tuple[InstallPlan, Machine]:
    machine, local = target_machine(settings, spec, uv, target)
    # Another computer's GPU cannot be seen from here: CPU unless --build says otherwise.
    build = target.build or (None if local else spec.torch_cpu.name)
    plan = make_plan(machine, spec, settings, build=build, backend=target.backend)
    if not plan.ok:
        raise InstallError(
            "No bundle can be made for that computer: " + " ".join(plan.problems),
            hint="Choose the target with --os, --arch, --python, --build and --backend.",
        )
    return plan, machine


def describe_target(target: dict[str, Any]) -> str:
    """``Linux x86_64, Python 3.12, cpu build, transformers backend``."""
    labels = {"linux": "Linux", "windows": "Windows", "macos": "macOS"}
    return (
        f"{labels.get(target['os'], target['os'])} {target['arch']}, Python {target['python']}, "
        f"{target['build']} build, {target['backend']} backend"
    )
