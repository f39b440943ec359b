"""Where torch comes from, what exactly that installs, and whether this computer can
run the pinned wheels at all.

The build the machine wants (``torch_build.choose_build``: CUDA or CPU) is one
question; where that build is published is another. PyPI carries one torch
build per platform (spec ``[torch.package_index]``): on Linux the cu130 build,
which also runs on the CPU; on Windows a CPU-only build; on Macs the normal
build. PyTorch's own index carries every build.

On Linux without a usable NVIDIA GPU the default is the package index's cu130
wheel, not PyTorch's CPU index, although the CPU build is about 4.7 GB smaller:

- it works wherever the package index works: company mirrors and proxies
  almost always carry PyPI, PyTorch's index often is blocked or unmirrored
  (as on the machine this was measured on);
- the plan does not depend on which hosts answered today, so ``repair`` never
  rebuilds 7 GB because the network changed, and a GPU fitted later needs no
  reinstall (the same wheel uses it);
- the bigger download is said in the plan, with its measured size.

``--build cpu`` asks for PyTorch's CPU build; when PyTorch's index does not
answer the plan's check, the package index's wheel is taken instead, and the
plan says so. A CUDA plan never falls back to a wheel that cannot use the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from geolibre_env.install.sources import netloc, package_index
from geolibre_env.machine.detect import Machine
from geolibre_env.machine.nvidia import version_key
from geolibre_env.redact import redact_url
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec, TorchBuild

__all__ = ["TorchSource", "choose_source", "platform_problem", "wheel_label"]

Origin = Literal["package-index", "pytorch", "mirror"]


@dataclass(frozen=True)
class TorchSource:
    """One place torch can come from, the build it installs there, and why."""

    build: TorchBuild  # what is installed from ``url``
    url: str
    origin: Origin
    setting: str  # "default", or the setting that chose ``url``
    why: str  # one sentence
    fallback: TorchSource | None = None  # taken when ``url`` does not answer

    @property
    def where(self) -> str:
        """``"the package index (pypi.org)"``, without credentials."""
        host = netloc(self.url)
        if self.origin == "package-index":
            if self.setting not in ("default", "--build"):
                return f"your package index {host} ({self.setting})"
            return f"the package index ({host})"
        if self.origin == "pytorch":
            return f"PyTorch's {self.build.name} index ({host})"
        return f"your torch index {host} ({self.setting})"


def wheel_label(build: TorchBuild) -> str:
    """``"torch 2.14.1+cu130"``, or ``"torch 2.14.1 (CPU build)"``."""
    if build.is_cuda:
        return f"torch {build.torch}+{build.name}"
    return f"torch {build.torch} (CPU build)"


def _same_index(a: str, b: str) -> bool:
    return redact_url(a).rstrip("/").lower() == redact_url(b).rstrip("/").lower()


def choose_source(
    wanted: TorchBuild,
    machine: Machine,
    spec: ModelEnvSpec,
    settings: EnvSettings,
    *,
    forced: bool,
) -> TorchSource:
    """Where ``wanted`` (or the build that stands in for it) comes from on ``machine``."""
    index_url, index_setting = package_index(settings)
    on_index = spec.package_index_builds.get(f"{machine.os}_{machine.arch}")
    index_build = spec.build(on_index) if on_index else None
    pytorch_url = spec.torch_index_url.replace("{build}", wanted.name)

    def from_index(build: TorchBuild, why: str) -> TorchSource:
        return TorchSource(build, index_url, "package-index", index_setting, why)

    if settings.torch_index_url:
        url = settings.torch_index_url.replace("{build}", wanted.name)
        if index_build is not None and _same_index(url, index_url):
            # Pointed at the package index itself: say what that index really serves.
            return TorchSource(
                index_build, url, "package-index", "GEOLIBRE_ML_TORCH_INDEX_URL",
                f"GEOLIBRE_ML_TORCH_INDEX_URL points torch at the package index, where "
                f"the {machine.os} {machine.arch} wheel is {wheel_label(index_build)}.",
            )  # fmt: skip
        return TorchSource(
            wanted, url, "mirror", "GEOLIBRE_ML_TORCH_INDEX_URL",
            "GEOLIBRE_ML_TORCH_INDEX_URL names your torch index; nothing else is tried.",
        )  # fmt: skip
    if index_build == wanted:
        return from_index(
            wanted,
            f"The package index's {wheel_label(wanted)} is the build this plan wants, so "
            f"torch comes from there with the other packages.",
        )
    pytorch = TorchSource(
        wanted, pytorch_url, "pytorch", "default",
        f"PyTorch's {wanted.name} index is where the {wanted.name} build is published.",
    )  # fmt: skip
    if index_build is None or wanted.is_cuda or not index_build.is_cuda:
        # A GPU plan never takes a wheel that cannot use the GPU (PyPI's Windows torch).
        return pytorch
    extra = _extra_gb(spec)
    larger = f"it is {extra} larger than PyTorch's CPU build but runs on the CPU as well"
    if forced:
        fallback = from_index(
            index_build,
            f"The package index's {wheel_label(index_build)} stands in for PyTorch's CPU "
            f"build, whose index did not answer: {larger}.",
        )
        return TorchSource(
            wanted, pytorch_url, "pytorch", "--build",
            f"You asked for the CPU build, which PyTorch's CPU index publishes; if it does "
            f"not answer, the package index's {wheel_label(index_build)} stands in "
            f"({extra} larger).",
            fallback=fallback,
        )  # fmt: skip
    return from_index(
        index_build,
        f"On Linux the package index's torch is the {index_build.name} build; {larger}, "
        f"works wherever the package index does, and uses a GPU fitted later without a "
        f"reinstall (`--build cpu` takes PyTorch's smaller CPU build instead).",
    )


def _extra_gb(spec: ModelEnvSpec) -> str:
    extra = spec.disk.env_bytes_cuda - spec.disk.env_bytes_cpu
    return f"{extra / 1e9:.1f} GB"


def platform_problem(machine: Machine, spec: ModelEnvSpec, build: TorchBuild) -> str | None:
    """One sentence when the pinned torch wheels cannot install on this OS release."""
    if machine.os == "linux" and spec.min_glibc and _older(machine.glibc, spec.min_glibc):
        return (
            f"torch {build.torch} for Linux needs glibc {spec.min_glibc} or newer (its "
            f"wheels are manylinux_{spec.min_glibc.replace('.', '_')}) and this Linux has "
            f"glibc {machine.glibc}; a newer Linux (Debian 10, Ubuntu 20.04, RHEL 8 or "
            f"later) can run it."
        )
    if machine.os == "macos" and spec.min_macos and _older(machine.macos_version, spec.min_macos):
        return (
            f"torch {build.torch} for Macs needs macOS {spec.min_macos} or newer (its "
            f"wheels are macosx_{spec.min_macos.replace('.', '_')}_arm64) and this Mac has "
            f"macOS {machine.macos_version}; update macOS, then install again."
        )
    return None


def _older(version: str | None, minimum: str) -> bool:
    """``version`` is known and below ``minimum`` (an unreadable one is not refused)."""
    try:
        return version is not None and version_key(version) < version_key(minimum)
    except ValueError:
        return False
