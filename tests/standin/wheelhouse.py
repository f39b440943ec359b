"""Build a local wheelhouse that real uv can install a fake model env from.

Three pure-Python wheels, written with zipfile (no build backend, no network):
- ``segment-geospatial 1.4.2+standin``: package ``samgeo`` whose ``samgeo.api``
  is the stand-in server, console script ``samgeo-api``, extras ``api`` and
  ``samgeo3`` declared. ``==1.4.2`` matches it: PEP 440 ignores a local
  label (``+standin``) when the requirement has none.
- ``torch 2.14.1+standin`` and ``torchvision 0.29.1+standin``: just enough API
  for a verify script on a machine without CUDA.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

from .harness import STANDIN_SCRIPT

SAMGEO_VERSION = "1.4.2+standin"
TORCH_VERSION = "2.14.1+standin"
TORCHVISION_VERSION = "0.29.1+standin"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed: the same input gives the same wheel bytes
ALIASES = {"samgeo": "segment-geospatial"}

_BROKEN = (
    "raise ImportError(\n"
    "    'standin wheelhouse: {name} was built broken on purpose (broken=...)'\n"
    ")\n"
)
_NO_DRIVER = (
    "Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU "
    "and installed a driver from http://www.nvidia.com/Download/index.aspx"
)
_TORCH_INIT = f'''"""Fake torch for geolibre-ml tests: a CPU-only machine, no CUDA.

STANDIN_TORCH_CUDA / _ARCHS / _DEVICES ("name=major.minor;...") turn it into
a CUDA build that sees those GPUs (for the doctor's diagnosis paths).
"""

from torch import backends, cuda, version

__version__ = "{TORCH_VERSION}"


class _Tensor:
    def __init__(self, values):
        self.values = list(values)

    def __mul__(self, factor):
        return _Tensor(v * factor for v in self.values)

    def sum(self):
        return _Tensor([sum(self.values)])

    def item(self):
        return self.values[0]


def ones(count, device=None):
    if device == "cuda" and not cuda.is_available():
        raise RuntimeError(cuda._NO_DRIVER)
    return _Tensor([1.0] * count)


def zeros(*size, **kwargs):
    """A list of zeros (real torch returns a tensor)."""
    count = 1
    for dim in size[0] if size and isinstance(size[0], (list, tuple)) else size:
        count *= dim
    return [0.0] * count
'''
_TORCH_CUDA = f'''"""Fake torch.cuda: no driver and no devices, unless STANDIN_TORCH_* say so."""

import os

_NO_DRIVER = "{_NO_DRIVER}"
_DEVICES = [
    (name, tuple(int(p) for p in cap.split(".")))
    for name, _, cap in (
        item.rpartition("=") for item in os.environ.get("STANDIN_TORCH_DEVICES", "").split(";")
    )
    if name
]


def is_available():
    return bool(_DEVICES) and bool(os.environ.get("STANDIN_TORCH_CUDA"))


def device_count():
    return len(_DEVICES) if is_available() else 0


def get_arch_list():
    archs = os.environ.get("STANDIN_TORCH_ARCHS", "")
    return [a for a in archs.split(",") if a] if is_available() else []


def get_device_capability(device=None):
    if not is_available():
        raise RuntimeError(_NO_DRIVER)
    return _DEVICES[device or 0][1]


def get_device_name(device=None):
    if not is_available():
        raise RuntimeError(_NO_DRIVER)
    return _DEVICES[device or 0][0]


def empty_cache():
    return None
'''
_TORCH_VERSION_PY = (
    f'import os\n__version__ = "{TORCH_VERSION}"\n'
    'cuda = os.environ.get("STANDIN_TORCH_CUDA") or None\nhip = None\n'
)
_TORCH_MPS = "def is_available():\n    return False\n\n\ndef is_built():\n    return False\n"
_SAMGEO_INIT = '''"""segment-geospatial stand-in for geolibre-ml tests (not the real package)."""

import torch  # noqa: F401  (the real samgeo imports torch when imported)

__version__ = "1.4.2"
'''


@dataclasses.dataclass(frozen=True)
class WheelSpec:
    """What goes into one wheel."""

    name: str
    version: str
    files: dict[str, str]
    requires: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    scripts: dict[str, str] = dataclasses.field(default_factory=dict)


def canonical_name(name: str) -> str:
    """PEP 503 name, with this module's aliases (``samgeo`` is segment-geospatial)."""
    name = re.sub(r"[-_.]+", "-", name).lower()
    return ALIASES.get(name, name)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def build_wheel(dest: Path, spec: WheelSpec) -> Path:
    """Write ``spec`` as a py3-none-any wheel in ``dest``; its path."""
    stem = re.sub(r"[-_.]+", "_", spec.name)
    dist_info = f"{stem}-{spec.version}.dist-info"
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {spec.name}",
        f"Version: {spec.version}",
        "Summary: stand-in for geolibre-ml tests (not the real package)",
        "Requires-Python: >=3.10",
        *(f"Requires-Dist: {req}" for req in spec.requires),
        *(f"Provides-Extra: {extra}" for extra in spec.extras),
    ]
    wheel = [
        "Wheel-Version: 1.0",
        "Generator: geolibre-standin-wheelhouse",
        "Root-Is-Purelib: true",
        "Tag: py3-none-any",
    ]
    files = {path: text.encode() for path, text in spec.files.items()}
    files[f"{dist_info}/METADATA"] = ("\n".join(metadata) + "\n").encode()
    files[f"{dist_info}/WHEEL"] = ("\n".join(wheel) + "\n").encode()
    if spec.scripts:
        lines = ["[console_scripts]", *(f"{k} = {v}" for k, v in spec.scripts.items())]
        files[f"{dist_info}/entry_points.txt"] = ("\n".join(lines) + "\n").encode()
    record = [f"{path},{_record_hash(data)},{len(data)}" for path, data in files.items()]
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()

    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{stem}-{spec.version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            info = zipfile.ZipInfo(path, date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return target


def wheel_specs(*, broken: Iterable[str] = ()) -> list[WheelSpec]:
    """The three wheels; a name in ``broken`` gets a top-level package that raises
    ImportError when imported."""
    broken_names = {canonical_name(name) for name in broken}

    def init(dist: str, module: str, text: str) -> str:
        return _BROKEN.format(name=module) if dist in broken_names else text

    samgeo = WheelSpec(
        name="segment-geospatial",
        version=SAMGEO_VERSION,
        files={
            "samgeo/__init__.py": init("segment-geospatial", "samgeo", _SAMGEO_INIT),
            "samgeo/api.py": STANDIN_SCRIPT.read_text(),
        },
        requires=("torch", "torchvision"),
        extras=("api", "samgeo3"),
        scripts={"samgeo-api": "samgeo.api:main"},
    )
    torch = WheelSpec(
        name="torch",
        version=TORCH_VERSION,
        files={
            "torch/__init__.py": init("torch", "torch", _TORCH_INIT),
            "torch/version.py": _TORCH_VERSION_PY,
            "torch/cuda/__init__.py": _TORCH_CUDA,
            "torch/backends/__init__.py": "from torch.backends import mps\n",
            "torch/backends/mps.py": _TORCH_MPS,
        },
    )
    torchvision_init = f'"""Fake torchvision."""\n\n__version__ = "{TORCHVISION_VERSION}"\n'
    torchvision = WheelSpec(
        name="torchvision",
        version=TORCHVISION_VERSION,
        files={"torchvision/__init__.py": init("torchvision", "torchvision", torchvision_init)},
        requires=("torch",),
    )
    return [samgeo, torch, torchvision]


def build_wheelhouse(
    dest: Path, *, omit: Iterable[str] = (), broken: Iterable[str] = ()
) -> list[Path]:
    """Write the wheels into ``dest`` (created if needed) and return their paths.

    ``omit`` leaves wheels out (a wheelhouse missing a package); ``broken`` makes
    a package fail on import (a failed verification). Names: ``segment-geospatial``
    (or ``samgeo``), ``torch``, ``torchvision``.
    """
    specs = wheel_specs(broken=broken)
    known = {spec.name for spec in specs}
    unknown = {canonical_name(n) for n in [*omit, *broken]} - known
    if unknown:
        raise ValueError(f"unknown wheel name(s) {sorted(unknown)}; known: {sorted(known)}")
    omitted = {canonical_name(name) for name in omit}
    return [build_wheel(Path(dest), spec) for spec in specs if spec.name not in omitted]
