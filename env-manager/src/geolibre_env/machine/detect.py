"""What this computer is: OS, memory, NVIDIA GPUs and driver, Pythons, free disk.

:func:`detect_machine` never raises for a missing or broken nvidia-smi: it
records the error text, because the plan must tell "no GPU" from "the probe
failed" (a failed probe must not replace a working CUDA install with CPU).
A :class:`Machine` round-trips through ``to_dict``/``from_dict`` so it can be
recorded, replayed in tests and shown in diagnostics.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

from geolibre_env.errors import ToolError
from geolibre_env.machine.nvidia import (
    LEGACY_NVIDIA_SMI_FIELDS,
    MISSING_TEXT,
    NVIDIA_SMI_FIELDS,
    TIMEOUT_TEXT,
    Gpu,
    classify_nvidia_smi_failure,
    parse_kernel_driver_version,
    parse_nvidia_smi_csv,
)
from geolibre_env.settings import EnvSettings
from geolibre_env.uv.runner import UvTool, find_uv, installed_pythons, tail_of

__all__ = [
    "DiskSpace",
    "Gpu",
    "Machine",
    "PythonInstall",
    "dedupe_pythons",
    "detect_machine",
    "nvidia_gpus",
    "probe_nvidia_smi",
]

PROC_DRIVER_VERSION = Path("/proc/driver/nvidia/version")
NVIDIA_SMI_TIMEOUT_S = 5.0
SYSCTL_TIMEOUT_S = 2.0
ERROR_TAIL_LINES = 4
# What nvidia-smi needs from our environment; nothing else (it may hold tokens).
_NVIDIA_SMI_ENV = ("PATH", "SYSTEMROOT", "SystemRoot", "WINDIR", "LD_LIBRARY_PATH")

OsName = Literal["linux", "windows", "macos"] | str
DriverSource = Literal["nvidia-smi", "kernel"]
DiskPurpose = Literal["environment", "cache", "weights"]
_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64"}


@dataclass(frozen=True)
class PythonInstall:
    version: str
    path: str

    @property
    def minor(self) -> str:
        """``"3.11"`` for ``"3.11.9"``."""
        return ".".join(self.version.split(".")[:2])


@dataclass(frozen=True)
class DiskSpace:
    """Free space for one purpose, measured on the nearest existing parent of ``path``.

    ``device`` identifies the filesystem, so purposes sharing one can be summed.
    """

    purpose: DiskPurpose
    path: str
    free_bytes: int
    total_bytes: int
    device: int | None


@dataclass(frozen=True)
class Machine:
    """What :func:`detect_machine` saw; ``nvidia_smi_error`` is None when nvidia-smi worked."""

    os: OsName
    arch: str
    cpu_count: int | None
    memory_total_bytes: int | None
    gpus: tuple[Gpu, ...]
    driver_version: str | None
    driver_source: DriverSource | None
    nvidia_smi_error: str | None
    apple_silicon: bool
    pythons: tuple[PythonInstall, ...]
    disks: tuple[DiskSpace, ...]
    # Why ``pythons`` is empty when uv could not be asked (diagnostics only).
    python_error: str | None = None
    # What the pinned wheels' platform tags depend on: glibc on Linux ("2.36";
    # None for musl or unknown), the macOS release ("14.5").
    glibc: str | None = None
    macos_version: str | None = None

    def disk(self, purpose: DiskPurpose) -> DiskSpace | None:
        return next((d for d in self.disks if d.purpose == purpose), None)

    def describe(self) -> str:
        """One line for people: OS, CPUs, memory, GPUs and driver."""
        parts = [f"{_OS_LABELS.get(self.os, self.os)} {self.arch}"]
        if self.apple_silicon:
            parts[0] += " (Apple silicon)"
        if self.cpu_count:
            parts.append(f"{self.cpu_count} CPUs")
        if self.memory_total_bytes:
            parts.append(f"{self.memory_total_bytes / 2**30:.0f} GB memory")
        if self.gpus:
            driver = f", driver {self.driver_version}" if self.driver_version else ""
            parts.append("; ".join(g.describe() for g in self.gpus) + driver)
        elif self.driver_version:
            parts.append(f"NVIDIA driver {self.driver_version}, no GPU listed")
        elif self.nvidia_smi_error and classify_nvidia_smi_failure(self.nvidia_smi_error) not in (
            "missing",
            "no_devices",
        ):
            parts.append("NVIDIA GPU not checked (nvidia-smi failed)")
        else:
            parts.append("no NVIDIA GPU")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Machine:
        data = dict(data)
        data["gpus"] = tuple(Gpu.from_dict(g) for g in data.get("gpus", ()))
        data["pythons"] = tuple(PythonInstall(**p) for p in data.get("pythons", ()))
        data["disks"] = tuple(DiskSpace(**d) for d in data.get("disks", ()))
        return cls(**data)


_OS_LABELS = {"linux": "Linux", "windows": "Windows", "macos": "macOS"}


def os_name(system: str) -> OsName:
    """``platform.system()`` in our words."""
    return {"Linux": "linux", "Windows": "windows", "Darwin": "macos"}.get(system, system.lower())


def normalize_arch(machine: str) -> str:
    lowered = machine.lower()
    return _ARCH_ALIASES.get(lowered, lowered)


# ---------------------------------------------------------------------------
# nvidia-smi


def nvidia_smi_candidates(settings: EnvSettings, system: OsName) -> list[str]:
    """Where nvidia-smi may be: the configured name, then Windows' usual places."""
    candidates = [settings.nvidia_smi]
    if system == "windows" and settings.nvidia_smi == "nvidia-smi":
        env = settings.environ
        system_root = env.get("SYSTEMROOT") or env.get("SystemRoot") or r"C:\Windows"
        program_files = env.get("ProgramW6432") or env.get("ProgramFiles") or r"C:\Program Files"
        # Current (DCH) drivers put it in System32; older ones in NVSMI.
        candidates.append(str(Path(system_root) / "System32" / "nvidia-smi.exe"))
        candidates.append(
            str(Path(program_files) / "NVIDIA Corporation" / "NVSMI" / "nvidia-smi.exe")
        )
    return candidates


def _find_executable(candidates: list[str], search_path: str) -> str | None:
    for candidate in candidates:
        found = shutil.which(candidate, path=search_path)
        if found:
            return found
    return None


def _run(argv: list[str], env: dict[str, str], timeout_s: float) -> tuple[int, str]:
    proc = subprocess.run(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # error sentences go to either stream
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout_s,
    )
    return proc.returncode, proc.stdout or ""


def probe_nvidia_smi(
    settings: EnvSettings, *, system: OsName, timeout_s: float = NVIDIA_SMI_TIMEOUT_S
) -> tuple[tuple[Gpu, ...], str | None]:
    """GPUs nvidia-smi lists, and the error text when it failed (never raises)."""
    search_path = settings.environ.get("PATH", os.defpath)
    candidates = nvidia_smi_candidates(settings, system)
    exe = _find_executable(candidates, search_path)
    if exe is None:
        return (), f"{MISSING_TEXT} (looked for: {', '.join(candidates)})."
    env = {k: v for k, v in settings.environ.items() if k in _NVIDIA_SMI_ENV}
    env.setdefault("PATH", search_path)
    fields = NVIDIA_SMI_FIELDS
    try:
        code, output = _run(_query(exe, fields), env, timeout_s)
        if code != 0 and "is not a valid field" in output:
            fields = LEGACY_NVIDIA_SMI_FIELDS
            code, output = _run(_query(exe, fields), env, timeout_s)
    except subprocess.TimeoutExpired:
        return (), f"{TIMEOUT_TEXT} within {timeout_s:g} s ({exe})."
    except OSError as exc:
        return (), f"nvidia-smi ({exe}) could not be started: {exc.strerror or exc}."
    gpus = tuple(parse_nvidia_smi_csv(output, fields))
    if code != 0:
        # Keep any rows it did print (one bad GPU must not hide the others).
        return gpus, f"nvidia-smi ({exe}) exited with code {code}: {_tail(output)}"
    if not gpus and output.strip():
        return (), f"nvidia-smi ({exe}) printed no GPU: {_tail(output)}"
    return gpus, None


def nvidia_gpus(settings: EnvSettings) -> tuple[Gpu, ...]:
    """The NVIDIA GPUs nvidia-smi lists now; none on macOS or when it fails."""
    system = os_name(platform.system())
    return () if system == "macos" else probe_nvidia_smi(settings, system=system)[0]


def _query(exe: str, fields: tuple[str, ...]) -> list[str]:
    return [exe, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]


def _tail(output: str) -> str:
    return tail_of(output, ERROR_TAIL_LINES).replace("\n", " / ") or "(no output)"


def read_kernel_driver_version(path: Path = PROC_DRIVER_VERSION) -> str | None:
    """The loaded Linux kernel module's version, when the file exists and reads."""
    try:
        return parse_kernel_driver_version(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None


# ---------------------------------------------------------------------------
# Pythons, disks, platform facts


def dedupe_pythons(found: list[tuple[str, str]]) -> tuple[PythonInstall, ...]:
    """``(version, path)`` pairs as uv lists them, one per resolved interpreter."""
    seen: set[str] = set()
    result: list[PythonInstall] = []
    for version, path in found:
        key = os.path.normcase(os.path.realpath(path))
        if key not in seen:
            seen.add(key)
            result.append(PythonInstall(version=version, path=path))
    return tuple(result)


def _detect_pythons(
    settings: EnvSettings, uv: UvTool | None
) -> tuple[tuple[PythonInstall, ...], str | None]:
    try:
        uv = uv or find_uv(settings)
        return dedupe_pythons(installed_pythons(uv, settings)), None
    except ToolError as exc:
        return (), str(exc)
    except ValueError as exc:  # uv printed something that is not JSON
        return (), f"uv's list of Pythons could not be read: {exc}"


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest parent that exists (folders are created later)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or ".")


def measure_disk(purpose: DiskPurpose, path: Path) -> DiskSpace | None:
    """Free and total bytes on the filesystem that will hold ``path``."""
    probe = nearest_existing(path)
    try:
        usage = shutil.disk_usage(probe)
        device = os.stat(probe).st_dev
    except OSError:
        return None
    return DiskSpace(purpose, str(path), usage.free, usage.total, device)


def disk_targets(settings: EnvSettings) -> dict[DiskPurpose, Path]:
    """The folder each purpose writes to. uv's cache honours UV_CACHE_DIR, as uv does."""
    uv_cache = settings.environ.get("UV_CACHE_DIR")
    return {
        "environment": settings.paths.model_root,
        "cache": Path(uv_cache).expanduser() if uv_cache else settings.paths.uv_cache,
        "weights": settings.paths.hf_home,
    }


def _apple_silicon(system: OsName, arch: str) -> bool:
    if system != "macos":
        return False
    if arch == "arm64":
        return True
    # An x86_64 Python under Rosetta still runs on Apple silicon.
    try:
        code, out = _run(["/usr/sbin/sysctl", "-n", "hw.optional.arm64"], {}, SYSCTL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return code == 0 and out.strip() == "1"


def detect_machine(
    settings: EnvSettings,
    *,
    uv: UvTool | None = None,
    timeout_s: float = NVIDIA_SMI_TIMEOUT_S,
    proc_driver_version: Path = PROC_DRIVER_VERSION,
    pythons: tuple[PythonInstall, ...] | None = None,
) -> Machine:
    """Look at this computer. Never raises for a missing or failing nvidia-smi.

    ``pythons`` skips interpreter discovery (about a second through pyenv shims)
    when the caller already knows which interpreter it will use.
    """
    system = os_name(platform.system())
    arch = normalize_arch(platform.machine())
    gpus, smi_error = (), None
    if system != "macos":  # no NVIDIA driver for current macOS
        gpus, smi_error = probe_nvidia_smi(settings, system=system, timeout_s=timeout_s)
    driver = next((g.driver_version for g in gpus if g.driver_version), None)
    source: DriverSource | None = "nvidia-smi" if driver else None
    if driver is None and system == "linux":
        driver = read_kernel_driver_version(proc_driver_version)
        source = "kernel" if driver else None
    python_error: str | None = None
    if pythons is None:
        pythons, python_error = _detect_pythons(settings, uv)
    disks = tuple(
        d for purpose, path in disk_targets(settings).items() if (d := measure_disk(purpose, path))
    )
    glibc = macos_version = None
    if system == "linux":
        libc, libc_version = platform.libc_ver()
        glibc = libc_version if libc == "glibc" and libc_version else None
    elif system == "macos":
        macos_version = platform.mac_ver()[0] or None
    try:
        memory: int | None = int(psutil.virtual_memory().total)
    except (OSError, RuntimeError):
        memory = None
    return Machine(
        os=system,
        arch=arch,
        cpu_count=os.cpu_count(),
        memory_total_bytes=memory,
        gpus=gpus,
        driver_version=driver,
        driver_source=source,
        nvidia_smi_error=smi_error,
        apple_silicon=_apple_silicon(system, arch),
        pythons=pythons,
        disks=disks,
        python_error=python_error,
        glibc=glibc,
        macos_version=macos_version,
    )
