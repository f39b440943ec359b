"""The pinned model-environment spec (``installers/model-env.toml``), typed."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from geolibre_env.errors import ConfigError

SPEC_FILENAME = "model-env.toml"

# Which SAM 3 code samgeo-api runs: Meta's sam3 package (needs CUDA) or the
# transformers port. One definition for the CLI, the plan, the weights and the sidecar.
Sam3Implementation = Literal["meta", "transformers"]
SAM3_IMPLEMENTATIONS: tuple[Sam3Implementation, ...] = ("meta", "transformers")


@dataclass(frozen=True)
class TorchBuild:
    """One torch build: a CUDA flavour (``cu126``...) or ``cpu``."""

    name: str
    torch: str
    torchvision: str
    cuda: str | None = None
    min_driver_linux: str | None = None
    min_driver_windows: str | None = None
    archs: tuple[str, ...] = ()

    @property
    def is_cuda(self) -> bool:
        return self.cuda is not None


@dataclass(frozen=True)
class DiskSpec:
    env_bytes_cuda: int
    env_bytes_cpu: int
    cache_bytes_cuda: int  # uv's cache on a drive of its own
    cache_bytes_cpu: int
    weights_bytes: int
    # uv's cache on the environment's drive: uv hard-links, so only what is not shared.
    cache_linked_bytes_cuda: int = 0
    cache_linked_bytes_cpu: int = 0


@dataclass(frozen=True)
class WeightsSpec:
    repo: str
    revision: str
    meta_files: tuple[str, ...]
    transformers_exclude: tuple[str, ...]
    vocab_repo: str
    vocab_repo_type: str
    vocab_file: str
    vocab_package_dir: str


@dataclass(frozen=True)
class ModelEnvSpec:
    """Everything the planner and the provisioner need to know about the target."""

    path: Path
    revision: int
    name: str
    pythons: tuple[str, ...]
    requirements: tuple[str, ...]
    constraints_path: Path | None
    server_script: str
    verify_imports: tuple[str, ...]
    disk: DiskSpec
    torch_index_url: str
    torch_builds: tuple[TorchBuild, ...]
    torch_cpu: TorchBuild
    weights: WeightsSpec
    fingerprint: str
    # Which build the package index's torch wheel is, per "os_arch" (linux_x86_64...).
    package_index_builds: dict[str, str] = field(default_factory=dict)
    min_glibc: str | None = None  # the Linux wheels' manylinux tag
    min_macos: str | None = None  # the Mac wheels' macosx tag

    def build(self, name: str) -> TorchBuild:
        for build in (*self.torch_builds, self.torch_cpu):
            if build.name == name:
                return build
        raise ConfigError(f"The spec has no torch build named {name!r}.")


def default_spec_path() -> Path:
    """The spec beside the installed package (wheel), else ``installers/`` in the checkout."""
    here = Path(__file__).resolve().parent
    bundled = here / SPEC_FILENAME
    if bundled.is_file():
        return bundled
    for parent in here.parents:
        candidate = parent / "installers" / SPEC_FILENAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "The model-environment spec (model-env.toml) is missing from this installation.",
        hint="Reinstall geolibre-ml, or point GEOLIBRE_ML_SPEC at a spec file.",
    )


def load_spec(path: Path | None = None) -> ModelEnvSpec:
    """Read and check a spec file; errors name the file and the key."""
    path = (path or default_spec_path()).resolve()
    try:
        raw_bytes = path.read_bytes()
        data = tomllib.loads(raw_bytes.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"The spec file {path} does not exist.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"The spec file {path} is not valid TOML: {exc}") from None

    def section(name: str) -> dict:
        value = data.get(name)
        if not isinstance(value, dict):
            raise ConfigError(f"The spec file {path} lacks the [{name}] section.")
        return value

    try:
        spec_s, packages, disk, torch, weights = (
            section("spec"),
            section("packages"),
            section("disk"),
            section("torch"),
            section("weights"),
        )
        constraints_name = packages.get("constraints")
        constraints_path = (path.parent / constraints_name) if constraints_name else None
        # What the spec says, not how it is written: a comment or layout edit in a new
        # release must not make every installed 7 GB environment out of date.
        digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode())
        if constraints_path is not None:
            digest.update(_constraint_lines(constraints_path.read_text("utf-8")).encode())
        return ModelEnvSpec(
            path=path,
            revision=int(spec_s["revision"]),
            name=str(spec_s["name"]),
            pythons=tuple(spec_s["pythons"]),
            requirements=tuple(packages["requirements"]),
            constraints_path=constraints_path,
            server_script=str(packages["server_script"]),
            verify_imports=tuple(packages.get("verify_imports", ())),
            disk=DiskSpec(**{k: int(v) for k, v in disk.items()}),
            torch_index_url=str(torch["index_url"]),
            torch_builds=tuple(_build(b) for b in torch.get("builds", [])),
            torch_cpu=_build(torch["cpu"]),
            weights=WeightsSpec(
                repo=weights["repo"],
                revision=weights.get("revision", "main"),
                meta_files=tuple(weights["meta_files"]),
                transformers_exclude=tuple(weights.get("transformers_exclude", ())),
                vocab_repo=weights["vocab_repo"],
                vocab_repo_type=weights.get("vocab_repo_type", "dataset"),
                vocab_file=weights["vocab_file"],
                vocab_package_dir=weights["vocab_package_dir"],
            ),
            fingerprint=digest.hexdigest()[:16],
            package_index_builds={
                str(k): str(v) for k, v in dict(torch.get("package_index", {})).items()
            },
            min_glibc=torch.get("min_glibc"),
            min_macos=torch.get("min_macos"),
        )
    except FileNotFoundError as exc:
        raise ConfigError(f"The spec file {path} names a missing file: {exc.filename}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"The spec file {path} is incomplete or wrong: {exc!r}") from None


def _build(table: dict) -> TorchBuild:
    return TorchBuild(
        name=str(table["name"]),
        torch=str(table["torch"]),
        torchvision=str(table["torchvision"]),
        cuda=table.get("cuda"),
        min_driver_linux=table.get("min_driver_linux"),
        min_driver_windows=table.get("min_driver_windows"),
        archs=tuple(table.get("archs", ())),
    )


def _constraint_lines(text: str) -> str:
    """The pins of a constraints file, without its comments, blank lines and spacing."""
    # pip's rule: a comment starts with "#" at the line's start or after a space (a URL's
    # "#sha256=" fragment is part of the pin).
    pins = (re.sub(r"(^|\s)#.*", "", line).strip() for line in text.splitlines())
    return "\n".join(pin for pin in pins if pin)
