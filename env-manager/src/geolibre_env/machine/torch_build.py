"""Which torch build a machine wants (CUDA, and which, or the CPU), and why.

The first CUDA build in the spec's order whose driver minimum this machine
meets and whose kernels cover every GPU; the CPU build otherwise, with a
reason that names the fix. A verified CUDA environment is never replaced by
the CPU build because one probe failed. Where the build comes from (and which
wheel stands in for "CPU" on Linux) is :mod:`geolibre_env.install.torch_source`'s job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from geolibre_env.machine.detect import Gpu, Machine
from geolibre_env.machine.nvidia import (
    arch_key,
    archs_cover,
    capability_key,
    classify_nvidia_smi_failure,
    nvidia_smi_fix,
    version_key,
)
from geolibre_env.spec import ModelEnvSpec, TorchBuild

__all__ = ["BuildChoice", "ExistingEnv", "choose_build"]


_OS_LABEL = {"linux": "Linux", "windows": "Windows"}
_ARM_NOTE = (
    "The spec's GPU lists are for x86-64; PyTorch's Linux ARM CUDA wheels carry fewer "
    "(Ampere, Hopper and Blackwell), so the CUDA check after installing has the last word.",
)


@dataclass(frozen=True)
class ExistingEnv:
    """The installed, verified model environment (the provisioner fills it in)."""

    build: str
    torch_version: str
    cuda_working: bool
    gpu_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildChoice:
    """A torch build and why; what the rest of the plan needs to know about it."""

    build: TorchBuild
    reason: str
    gpu_ready: bool  # SAM 3 can count on CUDA with this build
    gpus_seen: bool = False  # ...and this detection saw the GPUs (memory checks apply)
    no_gpu_why: str = ""  # a short clause, when not gpu_ready
    verified_gpus: str = ""  # a kept environment: the GPUs it last verified
    warnings: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    keeps_existing: bool = False


def _min_driver(build: TorchBuild, system: str) -> str | None:
    return {"linux": build.min_driver_linux, "windows": build.min_driver_windows}.get(system)


def _gpu_list(gpus: tuple[Gpu, ...] | list[Gpu]) -> str:
    return ", ".join(f"{g.name} ({g.compute_capability or 'capability unknown'})" for g in gpus)


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _readable(capability: str | None) -> bool:
    try:
        return capability is not None and bool(capability_key(capability))
    except ValueError:
        return False


def _misfit(build: TorchBuild, machine: Machine) -> str | None:
    """Why ``build`` cannot use these GPUs with this driver, or None when it can."""
    needed = _min_driver(build, machine.os)
    if needed is None:
        return f"{build.name} has no {_OS_LABEL.get(machine.os, machine.os)} build"
    uncovered = sorted(
        {
            g.compute_capability or "unknown"
            for g in machine.gpus
            if not (g.compute_capability and archs_cover(build.archs, g.compute_capability))
        }
    )
    if uncovered:
        return f"{build.name} has no kernels for compute capability {', '.join(uncovered)}"
    if version_key(machine.driver_version or "") < version_key(needed):
        return f"{build.name} needs driver {needed} or newer"
    return None


def choose_build(
    machine: Machine,
    spec: ModelEnvSpec,
    *,
    existing: ExistingEnv | None = None,
    forced: str | None = None,
) -> BuildChoice:
    """The torch build for ``machine``: the first CUDA build that fits, else CPU."""
    cpu = spec.torch_cpu
    if forced is not None:
        return _forced(machine, spec.build(forced))
    if machine.os == "macos":
        problems = ()
        if not machine.apple_silicon:
            problems = (
                f"PyTorch {cpu.torch} has no build for Intel Macs (the last one was 2.2), so "
                f"SAM 3 cannot be installed on this Mac; a Mac with Apple silicon or a "
                f"Windows or Linux PC can run it.",
            )
        return BuildChoice(
            cpu,
            f"PyTorch has no CUDA on macOS, so its Mac build (torch {cpu.torch}, CPU) is used.",
            gpu_ready=False,
            no_gpu_why="a Mac has no NVIDIA GPU",
            problems=problems,
        )
    failure = None
    if not machine.gpus and machine.nvidia_smi_error:
        failure = classify_nvidia_smi_failure(machine.nvidia_smi_error)
    kept = _keep_existing(machine, spec, existing, failure)
    if kept is not None:
        return kept
    choice = _no_gpu(machine, cpu, failure) if not machine.gpus else _cuda_or_cpu(machine, spec)
    if machine.gpus and machine.nvidia_smi_error:
        partial = f"nvidia-smi also reported a problem: {_first_line(machine.nvidia_smi_error)}"
        choice = replace(choice, warnings=(*choice.warnings, partial))
    if existing and existing.cuda_working and existing.build != cpu.name and choice.build == cpu:
        # The probe worked and still found no fit (a driver rolled back, a
        # GPU swapped): that is a decision, but never a silent one.
        warning = (
            f"This replaces the working {existing.build} environment (CUDA verified on "
            f"{', '.join(existing.gpu_names) or 'its GPU'}) with the CPU build."
        )
        choice = replace(choice, warnings=(*choice.warnings, warning))
    return choice


def _keep_existing(
    machine: Machine, spec: ModelEnvSpec, existing: ExistingEnv | None, failure: str | None
) -> BuildChoice | None:
    """Never downgrade: a verified CUDA environment survives a detection that saw no GPU."""
    if existing is None or not existing.cuda_working or machine.gpus:
        return None
    if existing.build == spec.torch_cpu.name:
        return None
    build = next((b for b in spec.torch_builds if b.name == existing.build), None)
    names = ", ".join(existing.gpu_names) or "its GPU"
    error = machine.nvidia_smi_error or "nvidia-smi listed no GPU"
    if build is None:
        # Nothing to keep, and picking CPU blind is the downgrade we refuse.
        return BuildChoice(
            spec.torch_cpu,
            f"The installed {existing.build} environment worked with CUDA, but this spec no "
            f"longer has that build and the GPU could not be checked ({_first_line(error)}).",
            gpu_ready=False,
            no_gpu_why="the GPU could not be checked",
            problems=(
                f"The GPU must be checked before the working {existing.build} environment is "
                f"replaced: {nvidia_smi_fix(error)}; then install again.",
            ),
        )
    verified = (
        f"the installed {build.name} environment (torch {existing.torch_version}) last "
        f"verified CUDA on {names}"
    )
    if failure in (None, "no_devices"):
        # The driver answered and lists no GPU: the GPU is really gone (for now).
        # We still keep the CUDA build: it runs on the CPU as well, and a GPU that
        # comes back (reseated, re-enabled) then needs no 7 GB reinstall.
        driver = f" {machine.driver_version}" if machine.driver_version else ""
        return BuildChoice(
            build,
            f"The NVIDIA driver{driver} answers but lists no GPU; {verified}, so it is kept "
            f"rather than replaced with the CPU build (a CUDA build also runs on the CPU).",
            gpu_ready=False,
            no_gpu_why="no NVIDIA GPU is visible now",
            warnings=(
                f"No NVIDIA GPU is visible now ({_first_line(error)}); SAM 3 uses the "
                f"transformers backend on the CPU until it is back. To switch to the smaller "
                f"CPU build for good, choose it explicitly.",
            ),
            keeps_existing=True,
        )
    return BuildChoice(
        build,
        f"nvidia-smi failed this time ({_first_line(error)}), but {verified}, so it is kept: "
        f"one failed probe must not replace a working CUDA install with the CPU build.",
        gpu_ready=True,
        verified_gpus=names,
        warnings=(
            f"The GPU could not be checked. To use it, {nvidia_smi_fix(error)}. If the GPU was "
            f"removed for good, choose the CPU build explicitly.",
        ),
        keeps_existing=True,
    )


def _no_gpu(machine: Machine, cpu: TorchBuild, failure: str | None) -> BuildChoice:
    installed = f"so torch {cpu.torch} runs on the CPU."
    driver = machine.driver_version
    if failure in (None, "no_devices"):
        seen = f"NVIDIA driver {driver} is installed but lists no GPU"
        seen = seen if driver else "nvidia-smi lists no GPU"
        return BuildChoice(cpu, f"{seen}, {installed}", False, no_gpu_why="no NVIDIA GPU was found")
    if failure == "missing" and driver is None:
        return BuildChoice(
            cpu,
            f"No NVIDIA GPU was found (nvidia-smi is not installed), {installed}",
            False,
            no_gpu_why="no NVIDIA GPU was found",
        )
    # The probe failed: a GPU may well be there, so say how to get it used.
    error = machine.nvidia_smi_error or ""
    loaded = f" The kernel reports NVIDIA driver {driver} loaded." if driver else ""
    fix = (
        "install NVIDIA's utilities (they bring nvidia-smi)"
        if failure == "missing"
        else nvidia_smi_fix(error)
    )
    return BuildChoice(
        cpu,
        f"nvidia-smi failed ({_first_line(error)}), so the GPU could not be checked and torch "
        f"{cpu.torch} runs on the CPU.{loaded}",
        False,
        no_gpu_why="the NVIDIA GPU could not be checked",
        warnings=(f"To use the GPU, {fix}; then install again to get a CUDA build.",),
    )


def _cuda_or_cpu(machine: Machine, spec: ModelEnvSpec) -> BuildChoice:
    cpu, gpus, system = spec.torch_cpu, machine.gpus, machine.os
    listed = _gpu_list(gpus)

    def cpu_because(reason: str, why: str, fix: str) -> BuildChoice:
        text = f"{reason}, so torch {cpu.torch} runs on the CPU."
        return BuildChoice(cpu, text, False, no_gpu_why=why, warnings=(fix,))

    if system not in _OS_LABEL:
        return cpu_because(
            f"PyTorch publishes CUDA builds for Linux and Windows only, not {system}",
            "no CUDA build exists for this system",
            "SAM 3 runs on the CPU here.",
        )
    try:
        version_key(machine.driver_version or "")
    except ValueError:
        return cpu_because(
            f"The NVIDIA driver version ({machine.driver_version or 'unknown'}) could not be read",
            "the NVIDIA driver could not be checked",
            "To use the GPU, check that `nvidia-smi` works in a terminal; then install again.",
        )
    unknown = [g for g in gpus if not _readable(g.compute_capability)]
    lowest = min(
        (d for b in spec.torch_builds if (d := _min_driver(b, system))),
        key=version_key,
        default="?",
    )
    if unknown:
        return cpu_because(
            f"The compute capability of {', '.join(g.name for g in unknown)} could not be read "
            f"(this nvidia-smi is too old to report it)",
            "the GPU could not be checked",
            f"Update the NVIDIA driver to {lowest} or newer, then install again to use the GPU.",
        )
    skipped: list[str] = []
    for build in spec.torch_builds:
        misfit = _misfit(build, machine)
        if misfit:
            skipped.append(misfit)
            continue
        passed = f"; skipped: {'; '.join(skipped)}" if skipped else ""
        return BuildChoice(
            build,
            f"NVIDIA driver {machine.driver_version} runs CUDA {build.cuda} ({build.name} needs "
            f"{_min_driver(build, system)} or newer on {_OS_LABEL[system]}) and torch "
            f"{build.torch}'s {build.name} build has kernels for {listed}, so {build.name} is "
            f"used: the first build in the spec's order that fits{passed}.",
            True,
            gpus_seen=True,
            warnings=_ARM_NOTE if (system, machine.arch) == ("linux", "arm64") else (),
        )
    return _why_cpu(machine, spec, cpu_because)


def _why_cpu(
    machine: Machine, spec: ModelEnvSpec, cpu_because: Callable[[str, str, str], BuildChoice]
) -> BuildChoice:
    """No CUDA build fits: say which fact is missing and what would fix it."""
    gpus, system, listed = machine.gpus, machine.os, _gpu_list(machine.gpus)
    builds = spec.torch_builds
    covering = [
        b
        for b in builds
        if _min_driver(b, system)
        and all(archs_cover(b.archs, g.compute_capability or "") for g in gpus)
    ]
    if covering:
        best = min(covering, key=lambda b: version_key(_min_driver(b, system) or ""))
        needed = _min_driver(best, system)
        return cpu_because(
            f"NVIDIA driver {machine.driver_version} is older than every CUDA build with kernels "
            f"for {listed} ({best.name}, torch {best.torch}, needs {needed} or newer on "
            f"{_OS_LABEL[system]})",
            f"driver {machine.driver_version} is too old",
            f"Update the NVIDIA driver to {needed} or newer, then install again to use the GPU.",
        )
    built = [k for b in builds for a in b.archs if (k := arch_key(a))]
    oldest = min(built)
    alone = [
        g for g in gpus if not any(archs_cover(b.archs, g.compute_capability or "") for b in builds)
    ]
    too_old = [g for g in alone if capability_key(g.compute_capability or "0.0") < oldest]
    if too_old:
        others = [g for g in gpus if g not in too_old]
        return cpu_because(
            f"{_gpu_list(too_old)} is too old for current PyTorch, whose CUDA builds start at "
            f"compute capability {oldest[0]}.{oldest[1]}",
            "the GPU is too old for current PyTorch",
            f"Remove or disable {', '.join(g.name for g in too_old)} to use "
            f"{', '.join(g.name for g in others)} with a CUDA build."
            if others
            else "This GPU cannot run SAM 3; it runs on the CPU instead.",
        )
    if alone:
        return cpu_because(
            f"No CUDA build in this spec has kernels for {_gpu_list(alone)}",
            "no CUDA build supports this GPU yet",
            "A later geolibre-ml with a newer PyTorch build may support it; until then SAM 3 "
            "runs on the CPU.",
        )
    gaps = "; ".join(m for b in builds if (m := _misfit(b, machine)))
    return cpu_because(
        f"No single CUDA build has kernels for all of {listed} ({gaps})",
        "no CUDA build supports all these GPUs together",
        "Remove or disable one of the GPUs to use the others with a CUDA build.",
    )


def _forced(machine: Machine, build: TorchBuild) -> BuildChoice:
    if not build.is_cuda:
        return BuildChoice(
            build,
            f"You chose the CPU build (torch {build.torch}).",
            False,
            no_gpu_why="you chose the CPU build",
        )
    unchecked = not machine.gpus and machine.nvidia_smi_error is not None
    try:
        misfit = _misfit(build, machine) if machine.gpus else "no NVIDIA GPU was seen"
    except ValueError:
        misfit = "the NVIDIA driver version could not be read"
    warnings = (
        ()
        if misfit is None
        else (f"You chose {build.name}, but CUDA may not work with it here: {misfit}.",)
    )
    return BuildChoice(
        build,
        f"You chose the {build.name} build (torch {build.torch}, CUDA {build.cuda}).",
        misfit is None or unchecked,
        gpus_seen=misfit is None,
        no_gpu_why=misfit or "",
        verified_gpus="the GPU you expect",
        warnings=warnings,
    )
