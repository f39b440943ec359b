"""The install plan: which Python, torch build, SAM 3 backend and disk, and why.

Deciding is apart from doing: :func:`make_plan` reads a detected
:class:`~geolibre_env.machine.detect.Machine` and the pinned spec and returns an
:class:`InstallPlan`; the provisioner carries it out. Each choice comes with
one plain sentence saying why, with the numbers behind it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from geolibre_env.errors import ConfigError
from geolibre_env.install.failures import InstallFailure
from geolibre_env.install.plan_disk import (
    DiskNeed,
    FilesystemCheck,
    disk_needs,
    disk_verdict,
    filesystems_of,
    gb,
)
from geolibre_env.install.source_check import SourceAnswer
from geolibre_env.install.source_verdict import judge_answers, source_targets
from geolibre_env.install.sources import describe_sources, format_sources
from geolibre_env.install.torch_source import choose_source, platform_problem, wheel_label
from geolibre_env.machine.detect import Machine, PythonInstall
from geolibre_env.machine.torch_build import BuildChoice, ExistingEnv, choose_build
from geolibre_env.redact import redact_url
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import SAM3_IMPLEMENTATIONS, ModelEnvSpec, Sam3Implementation, TorchBuild

__all__ = [
    "DiskNeed", "ExistingEnv", "FilesystemCheck", "InstallPlan", "make_plan",
    "source_targets",
]  # fmt: skip


# GPU memory SAM 3 needs: our estimate, not a published figure. The 3.4 GB
# fp32 checkpoint (spec [disk] weights_bytes) lives on the GPU, plus
# activations for SAM 3's 1008-pixel input and ~0.5 GB of CUDA context.
# Cards sold as "8 GB" report 7.6 to 8.0 GiB, so the line sits just below.
SAM3_GPU_MEMORY_MIB = 7680
# Memory SAM 3 needs on the CPU (transformers backend): also an estimate, the
# same weights in fp32, about twice that while loading, and the GIS app
# beside it: 16 GB. Machines sold as 16 GB report 15.2 to 15.9 GiB.
MIN_CPU_MEMORY_BYTES = 15 * 2**30
_CPU_SPEED = "expect minutes per image"


@dataclass(frozen=True)
class Reason:
    topic: Literal["python", "torch", "backend", "disk"]
    text: str


@dataclass(frozen=True)
class InstallPlan:
    """What ``geolibre-ml install`` will do on this machine, and why."""

    python: PythonInstall | None
    torch_build: TorchBuild
    torch_index_url: str
    torch_requirements: tuple[str, ...]
    requirements: tuple[str, ...]
    constraints_path: Path | None
    sam3_backend: Sam3Implementation
    can_run_sam3: bool
    sam3_statement: str
    disk_needs: tuple[DiskNeed, ...]
    filesystems: tuple[FilesystemCheck, ...]
    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    reasons: tuple[Reason, ...]
    spec_name: str
    spec_fingerprint: str
    machine_summary: str
    keeps_existing: bool = False  # a working CUDA env is kept although no GPU was seen
    # Where packages, torch and weights come from (mirrors, proxy, trust; no credentials).
    sources: dict[str, Any] = field(default_factory=dict)
    # What will be installed, in words: "torch 2.14.1+cu130 from the package index
    # (pypi.org); runs on the CPU here".
    torch_label: str = ""
    gpu_ready: bool = False  # SAM 3 can count on CUDA with this plan
    # Whether each source answered the plan's check; empty when not checked.
    source_checks: tuple[SourceAnswer, ...] = ()
    # The sources that did not answer, as install failures (kind, sentence, next step).
    source_failures: tuple[InstallFailure, ...] = ()

    @property
    def ok(self) -> bool:
        """Nothing blocks the install."""
        return not self.problems

    def reason(self, topic: str) -> str:
        return next(r.text for r in self.reasons if r.topic == topic)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the index URL without credentials."""
        data = asdict(self)
        data["torch_index_url"] = redact_url(self.torch_index_url)
        data["constraints_path"] = str(self.constraints_path) if self.constraints_path else None
        data["reasons"] = {r.topic: r.text for r in self.reasons}
        data["source_checks"] = [a.to_dict() for a in self.source_checks]
        for fs, check in zip(data["filesystems"], self.filesystems, strict=True):
            fs["enough"] = check.enough
        data["ok"] = self.ok
        return data

    def format_text(self) -> str:
        """The plan for people (``geolibre-ml install --dry-run``)."""
        build = self.torch_build
        python = f"{self.python.version} ({self.python.path})" if self.python else "none found"
        lines = [
            f"Install plan for {self.spec_name} (spec {self.spec_fingerprint})",
            f"  Machine:  {self.machine_summary}",
            f"  Python:   {python}",
            f"  PyTorch:  {self.torch_label}",
            f"            with torchvision {build.torchvision}, "
            f"index {redact_url(self.torch_index_url)}",
            f"  Packages: {', '.join(self.requirements)}",
            f"  SAM 3:    {self.sam3_backend} backend; {self.sam3_statement}",
        ]
        if self.sources:
            lines.append("  Sources:")
            lines += [f"    {line}" for line in format_sources(self.sources)]
        if self.source_checks:
            lines.append("  Checked just now:")
            lines += [f"    {answer.sentence()}" for answer in self.source_checks]
        lines.append("  Disk:")
        for fs in self.filesystems:
            free = "free space unknown" if fs.free_bytes is None else f"{gb(fs.free_bytes)} free"
            lines.append(
                f"    {fs.path} ({', '.join(fs.purposes)}): needs {gb(fs.needed_bytes)}, {free}"
            )
        for title, items in (
            ("Why:", [r.text for r in self.reasons]),
            ("Warnings:", self.warnings),
            ("Problems (the install cannot start until they are fixed):", self.problems),
        ):
            lines += [title, *(f"  - {item}" for item in items)] if items else []
        lines.append(
            "Ready to install." if self.ok else f"Not ready: {len(self.problems)} problem(s)."
        )
        return "\n".join(lines)


def make_plan(
    machine: Machine,
    spec: ModelEnvSpec,
    settings: EnvSettings,
    *,
    existing: ExistingEnv | None = None,
    backend: Sam3Implementation | None = None,
    build: str | None = None,
    answers: tuple[SourceAnswer, ...] | None = None,
) -> InstallPlan:
    """Decide the install for ``machine``; ``build`` forces a torch build by name.

    ``answers`` are the results of checking the sources (:func:`source_targets`):
    a torch source that did not answer gives way to its fallback, if it has one,
    and a dead package index or torch source is a problem before any download.
    """
    if backend is not None and backend not in SAM3_IMPLEMENTATIONS:
        raise ConfigError(
            f"{backend!r} is not a SAM 3 backend.",
            hint=f"Choose one of {', '.join(SAM3_IMPLEMENTATIONS)}.",
        )
    problems: list[str] = []
    warnings: list[str] = []

    choice = choose_build(machine, spec, existing=existing, forced=build)
    warnings += choice.warnings
    problems += choice.problems

    python, python_reason = _choose_python(machine, spec)
    if python is None:
        problems.append(python_reason)

    chosen: Sam3Implementation = backend or ("meta" if choice.gpu_ready else "transformers")
    backend_reason, can_run, statement = _backend(machine, choice, chosen, backend is not None)
    if chosen == "meta" and not choice.gpu_ready:
        problems.append(
            f"You chose SAM 3's meta backend, but it needs an NVIDIA GPU with CUDA and this "
            f"plan has none ({choice.no_gpu_why}). Choose the transformers backend instead."
        )
    if choice.gpu_ready and choice.gpus_seen:
        warnings += _gpu_memory_warnings(machine)
    if not can_run and chosen == "transformers":  # the meta case is a problem above
        warnings.append(statement)

    source = choose_source(choice.build, machine, spec, settings, forced=build is not None)
    verdict = judge_answers(source, answers or (), settings)
    source = verdict.source
    problems += [f.summary for f in verdict.failures]
    warnings += verdict.warnings
    picked = source.build
    unfit = platform_problem(machine, spec, picked)
    if unfit:
        problems.append(unfit)

    needs = disk_needs(machine, spec, settings, picked, chosen)
    filesystems = filesystems_of(machine, needs)
    disk_reason, disk_problems, disk_warnings = disk_verdict(picked, needs, filesystems)
    problems += disk_problems
    warnings += disk_warnings

    index_url = source.url
    runs = f"runs on CUDA {picked.cuda} here" if choice.gpu_ready else "runs on the CPU here"
    label = f"{wheel_label(picked)} from {source.where}; {runs}"
    torch_reason = f"{choice.reason} {source.why} It comes from {source.where}."
    return InstallPlan(
        python=python,
        torch_build=picked,
        torch_index_url=index_url,
        torch_requirements=(f"torch=={picked.torch}", f"torchvision=={picked.torchvision}"),
        requirements=spec.requirements,
        constraints_path=spec.constraints_path,
        sam3_backend=chosen,
        can_run_sam3=can_run,
        sam3_statement=statement,
        disk_needs=needs,
        filesystems=filesystems,
        problems=tuple(problems),
        warnings=tuple(warnings),
        reasons=(
            Reason("python", python_reason),
            Reason("torch", torch_reason),
            Reason("backend", backend_reason),
            Reason("disk", disk_reason),
        ),
        spec_name=spec.name,
        spec_fingerprint=spec.fingerprint,
        machine_summary=machine.describe(),
        keeps_existing=choice.keeps_existing,
        sources=describe_sources(settings, torch_index_url=index_url, torch_from=source.setting),
        torch_label=label,
        gpu_ready=choice.gpu_ready,
        source_checks=tuple(answers or ()),
        source_failures=verdict.failures,
    )


# ---------------------------------------------------------------------------
# Python


def _patch_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version)[:3])


def _choose_python(machine: Machine, spec: ModelEnvSpec) -> tuple[PythonInstall | None, str]:
    allowed = " or ".join(spec.pythons)
    for minor in spec.pythons:
        candidates = [p for p in machine.pythons if p.minor == minor]
        if candidates:
            best = max(candidates, key=lambda p: _patch_key(p.version))  # first of equals
            several = len(candidates) > 1
            newest = f", the newest {minor} of {len(candidates)} found" if several else ""
            return best, (
                f"Python {best.version} ({best.path}) is used: the spec allows {allowed}, "
                f"preferring them in that order{newest}."
            )
    found = sorted({p.version for p in machine.pythons}, key=_patch_key)
    seen = f"found only {', '.join(found)}" if found else "found none"
    uv_error = f"; {machine.python_error}" if machine.python_error else ""
    return None, (
        f"No Python {allowed} was found on this computer ({seen}{uv_error}). Install Python "
        f"{spec.pythons[-1]} (from python.org, or with `uv python install {spec.pythons[-1]}`), "
        f"then install again."
    )


# ---------------------------------------------------------------------------
# SAM 3 backend


def _backend(
    machine: Machine, choice: BuildChoice, chosen: Sam3Implementation, asked: bool
) -> tuple[str, bool, str]:
    """(reason, can_run_sam3, statement)."""
    on_cpu = f"the transformers backend runs on the CPU, {_CPU_SPEED}"
    if chosen == "meta" and choice.gpu_ready:
        reason = (
            "The meta backend is used, as you chose; it runs on CUDA, which this plan provides."
            if asked
            else "The meta backend (SAM 3's own implementation, which needs CUDA) is the "
            "default with a working NVIDIA GPU."
        )
        if choice.gpus_seen:
            return reason, True, f"SAM 3 runs on the {machine.gpus[0].describe()}."
        kept = (
            f"SAM 3 keeps running on the GPU this environment last verified "
            f"({choice.verified_gpus}); nvidia-smi could not confirm it this time."
        )
        return reason, True, kept
    if chosen == "meta":
        statement = f"SAM 3's meta backend cannot run here ({choice.no_gpu_why}); {on_cpu}."
        return "The meta backend is what you chose, but it needs CUDA.", False, statement
    if choice.gpu_ready:
        reason = "The transformers backend is used, as you chose (meta is the default on CUDA)."
        return reason, True, "SAM 3 runs with the transformers backend."
    reason = (
        "The transformers backend is used, as you chose."
        if asked
        else f"The transformers backend is used because SAM 3's meta backend needs CUDA "
        f"({choice.no_gpu_why}); transformers runs on the CPU."
    )
    memory = machine.memory_total_bytes
    if memory is not None and memory < MIN_CPU_MEMORY_BYTES:
        statement = (
            f"This computer has {memory / 2**30:.0f} GB of memory and SAM 3 on the CPU needs "
            f"about 16 GB (our estimate), so SAM 3 cannot run here; a computer with more "
            f"memory or an NVIDIA GPU with 8 GB can."
        )
        return reason, False, statement
    where = (
        "On a Mac, SAM 3's meta backend cannot run (it needs an NVIDIA GPU)"
        if machine.os == "macos"
        else "Without a usable NVIDIA GPU, SAM 3's meta backend cannot run here"
    )
    unknown = "" if memory is not None else " (its memory could not be read; it needs 16 GB)"
    return reason, True, f"{where}; {on_cpu}{unknown}."


def _gpu_memory_warnings(machine: Machine) -> list[str]:
    known = [g for g in machine.gpus if g.memory_total_mib is not None]
    if not known:
        return [
            f"The memory of {machine.gpus[0].name} could not be read; SAM 3 needs roughly 8 GB "
            f"of GPU memory (our estimate)."
        ]
    largest = max(known, key=lambda g: g.memory_total_mib or 0)
    if (largest.memory_total_mib or 0) < SAM3_GPU_MEMORY_MIB:
        return [
            f"{largest.name} has {largest.memory_total_mib / 1024:.1f} GB of memory; SAM 3 needs "
            f"roughly 8 GB (our estimate: its 3.4 GB of weights plus working memory), so it may "
            f"fail with 'CUDA out of memory'. Each distinct backend or confidence threshold "
            f"loads another copy of the model; the transformers backend on the CPU is the "
            f"fallback."
        ]
    return []
