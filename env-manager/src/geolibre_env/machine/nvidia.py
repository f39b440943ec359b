"""Reading what nvidia-smi and the Linux kernel driver say, and CUDA's compatibility rules.

Everything here is pure (text in, values out) so it can be tested against
recorded outputs; :mod:`geolibre_env.machine.detect` runs the tools.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

# The query we send. ``--format=csv,noheader,nounits`` gives one line per GPU,
# fields in this order, memory in MiB.
NVIDIA_SMI_FIELDS = (
    "index",
    "name",
    "driver_version",
    "compute_cap",
    "memory.total",
    "memory.free",
    "uuid",
)
# nvidia-smi before the R510 drivers rejects the whole query when it names
# ``compute_cap`` (seen with 470.x), so we ask again without it.
LEGACY_NVIDIA_SMI_FIELDS = tuple(f for f in NVIDIA_SMI_FIELDS if f != "compute_cap")

# How nvidia-smi spells "no value" for a field.
_UNREPORTED = {
    "",
    "N/A",
    "[N/A]",
    "[Not Supported]",
    "[Unknown Error]",
    "[Insufficient Permissions]",
    "[GPU requires reset]",
    "[GPU is lost]",
}
_CAPABILITY = re.compile(r"^(\d+)\.(\d+)$")
_ARCH = re.compile(r"^sm_(\d+)(\d)$")

CapabilitySource = Literal["nvidia-smi", "name"]


@dataclass(frozen=True)
class Gpu:
    """One NVIDIA GPU as nvidia-smi reports it.

    ``compute_capability`` is ``"8.6"``-style, or None when unknown;
    ``capability_source`` says whether nvidia-smi reported it or it was looked
    up from the GPU's name (old nvidia-smi cannot report it).
    """

    index: int
    name: str
    driver_version: str | None
    compute_capability: str | None
    memory_total_mib: int | None = None
    memory_free_mib: int | None = None
    uuid: str | None = None
    capability_source: CapabilitySource | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Gpu:
        return cls(**data)

    def describe(self) -> str:
        """``NVIDIA A100-SXM4-80GB (compute capability 8.0, 80 GB)``."""
        facts = [
            f"compute capability {self.compute_capability}"
            if self.compute_capability
            else "compute capability unknown"
        ]
        if self.memory_total_mib is not None:
            facts.append(f"{self.memory_total_mib / 1024:.0f} GB")
        return f"{self.name} ({', '.join(facts)})"


def _value(raw: str) -> str | None:
    raw = raw.strip()
    return None if raw in _UNREPORTED else raw


def _int(raw: str) -> int | None:
    value = _value(raw)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def parse_nvidia_smi_csv(text: str, fields: tuple[str, ...] = NVIDIA_SMI_FIELDS) -> list[Gpu]:
    """GPUs from ``nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`` output.

    Lines that are not GPU rows (error sentences mixed into the output, e.g.
    "Unable to determine the device handle for GPU ...") are skipped; the
    caller keeps the raw text for the error report. Without ``compute_cap`` in
    ``fields`` the capability comes from :func:`capability_from_name`.
    """
    gpus: list[Gpu] = []
    for line in text.splitlines():  # also splits \r\n (Windows)
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != len(fields):
            continue
        row = dict(zip(fields, parts, strict=True))
        try:
            index = int(row["index"])
        except ValueError:
            continue
        name = _value(row["name"]) or "NVIDIA GPU"
        capability: str | None = None
        source: CapabilitySource | None = None
        if "compute_cap" in row:
            reported = _value(row["compute_cap"])
            if reported and _CAPABILITY.match(reported):
                capability, source = reported, "nvidia-smi"
        if capability is None:
            capability = capability_from_name(name)
            source = "name" if capability else None
        gpus.append(
            Gpu(
                index=index,
                name=name,
                driver_version=_value(row["driver_version"]),
                compute_capability=capability,
                memory_total_mib=_int(row["memory.total"]),
                memory_free_mib=_int(row["memory.free"]),
                uuid=_value(row["uuid"]),
                capability_source=source,
            )
        )
    return gpus


_KERNEL_VERSION = re.compile(
    r"^NVRM version:.*?Kernel Module(?: for [\w-]+)?\s+(\d+\.\d+(?:\.\d+)?)\s", re.M
)


def parse_kernel_driver_version(text: str) -> str | None:
    """The driver version from ``/proc/driver/nvidia/version`` (proprietary or open module)."""
    match = _KERNEL_VERSION.search(text + "\n")
    return match.group(1) if match else None


# ---------------------------------------------------------------------------
# Why nvidia-smi gave no GPUs, and what the user can do about it.

NvidiaSmiFailure = Literal[
    "missing", "no_driver", "version_mismatch", "no_devices", "gpu_lost", "timeout", "failed"
]
# Our own wording for the two failures that produce no nvidia-smi output.
MISSING_TEXT = "nvidia-smi was not found"
TIMEOUT_TEXT = "nvidia-smi did not answer"

_FAILURE_SHAPES: tuple[tuple[str, NvidiaSmiFailure], ...] = (
    (MISSING_TEXT, "missing"),
    (TIMEOUT_TEXT, "timeout"),
    ("couldn't communicate with the nvidia driver", "no_driver"),
    ("driver/library version mismatch", "version_mismatch"),
    ("no devices were found", "no_devices"),
    ("gpu is lost", "gpu_lost"),
    ("unable to determine the device handle", "gpu_lost"),
)

# Each fix is a clause that reads after "To use the GPU, ".
_FIXES: dict[NvidiaSmiFailure, str] = {
    "missing": "install NVIDIA's driver if this computer has an NVIDIA GPU (it brings nvidia-smi)",
    "no_driver": (
        "reinstall the NVIDIA driver and restart the computer, because the driver is not "
        "loaded (on Linux, Secure Boot can block an unsigned driver module)"
    ),
    "version_mismatch": (
        "restart the computer, because the driver was updated but the old one is still loaded"
    ),
    "no_devices": "check that the GPU is seated and enabled, because the driver sees none",
    "gpu_lost": "restart the computer, because the GPU stopped responding",
    "timeout": "restart the computer, because the GPU or its driver did not answer",
    "failed": "check that `nvidia-smi` works in a terminal",
}


def classify_nvidia_smi_failure(error: str) -> NvidiaSmiFailure:
    """Which known failure an nvidia-smi error text is."""
    lowered = error.lower()
    for needle, kind in _FAILURE_SHAPES:
        if needle.lower() in lowered:
            return kind
    return "failed"


def nvidia_smi_fix(error: str) -> str:
    """A plain next step for an nvidia-smi error text."""
    return _FIXES[classify_nvidia_smi_failure(error)]


# ---------------------------------------------------------------------------
# Versions and CUDA's binary compatibility.


def version_key(version: str) -> tuple[int, ...]:
    """``"525.60.13"`` -> ``(525, 60, 13)``, comparable; a bad value raises ValueError."""
    parts = tuple(int(part) for part in version.strip().split("."))
    # Pad so "580" compares equal to "580.0.0" rather than below it.
    return parts + (0,) * (3 - len(parts))


def capability_key(capability: str) -> tuple[int, int]:
    """``"8.6"`` -> ``(8, 6)``; ``"12.0"`` -> ``(12, 0)``."""
    match = _CAPABILITY.match(capability.strip())
    if not match:
        raise ValueError(f"not a compute capability: {capability!r}")
    return int(match.group(1)), int(match.group(2))


def arch_key(arch: str) -> tuple[int, int] | None:
    """``"sm_86"`` -> ``(8, 6)``, ``"sm_120"`` -> ``(12, 0)``; None for PTX or ``sm_90a``."""
    match = _ARCH.match(arch.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def arch_covers(arch: str, capability: str) -> bool:
    """Whether kernels built for ``arch`` run on a GPU of ``capability``.

    CUDA's binary compatibility: a cubin built for X.Y runs on X.Z for Z >= Y
    within the same major version, never across majors (8.6 kernels run on
    8.9 Ada cards, which is why wheels can skip sm_89). Arch-specific targets
    (``sm_90a``) run only on that exact chip and are ignored here, as is PTX:
    relying on the driver compiling PTX at start-up is not a supported path
    we want to plan for.
    """
    built = arch_key(arch)
    if built is None:
        return False
    major, minor = capability_key(capability)
    return built[0] == major and built[1] <= minor


def archs_cover(archs: tuple[str, ...], capability: str) -> bool:
    return any(arch_covers(arch, capability) for arch in archs)


# ---------------------------------------------------------------------------
# Compute capability from the GPU's name, for nvidia-smi too old to report it.
# Such nvidia-smi only ships with drivers older than every build in the spec,
# so the table never decides a CUDA build; it lets the plan say *why* ("a
# Pascal card: update the driver" versus "a Kepler card: too old for current
# PyTorch"). A name that is not here stays unknown. Source: NVIDIA's CUDA GPU
# list (developer.nvidia.com/cuda-gpus). More specific patterns come first.
_NAME_TABLE: tuple[tuple[str, str], ...] = (
    (r"RTX (PRO )?\d+ Blackwell|RTX 50\d0", "12.0"),
    (r"\bG?B[12]00\b", "10.0"),
    (r"\bG?H[12]00\b|\bH800\b", "9.0"),
    (r"RTX 40\d0|\bL4\b|\bL40|RTX \d+ Ada", "8.9"),
    (r"\bA100\b|\bA800\b|\bA30\b", "8.0"),
    (r"RTX 30\d0|RTX A\d{4}|\bA10G?\b|\bA16\b|\bA40\b|\bA2\b", "8.6"),
    (
        r"RTX 20\d0|GTX 16\d0|TITAN RTX|Quadro RTX|\bT4\b|Quadro T\d+|\bT[46]00\b|\bT1[02]00\b",
        "7.5",
    ),
    (r"TITAN V\b|\bV100|GV100", "7.0"),
    (r"\bP100\b|GP100", "6.0"),
    (r"GTX 10\d0|GT 1030|TITAN Xp|TITAN X \(Pascal\)|\bP40\b|\bP4\b|Quadro P\d+|MX[123]50", "6.1"),
    (r"GTX 9[5-8]0|GTX TITAN X|\bTITAN X\b|\bM40\b|\bM60\b|Quadro M\d+", "5.2"),
    (r"GTX 750|GTX 745|Quadro K(620|1200|2200)|\bM10\b", "5.0"),
    (r"\bK80\b", "3.7"),
    (r"\bK40|\bK20|GTX 78\d|GTX TITAN|GT 7[13]0", "3.5"),
    (r"GTX 6[5-9]\d|GTX 7[67]\d|\bK10\b", "3.0"),
)


def capability_from_name(name: str) -> str | None:
    """The compute capability of a well-known GPU model, else None."""
    for pattern, capability in _NAME_TABLE:
        if re.search(pattern, name, re.I):
            return capability
    return None
