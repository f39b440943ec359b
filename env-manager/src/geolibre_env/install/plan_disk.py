"""The plan's disk figures: what each purpose needs where, summed per filesystem.

The figures are the spec's measured ones (``installers/model-env.toml`` [disk]) for
the wheel actually installed; uv's cache on the environment's drive costs only what
it does not hard-link into the environment.
"""

from __future__ import annotations

from dataclasses import dataclass

from geolibre_env.machine.detect import DiskPurpose, Machine, disk_targets
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec, TorchBuild

__all__ = [
    "DISK_HEADROOM_BYTES", "DiskNeed", "FilesystemCheck", "disk_needs", "disk_verdict",
    "filesystems_of", "gb",
]  # fmt: skip

# Never plan to fill a drive to the last byte.
DISK_HEADROOM_BYTES = 1_000_000_000


def gb(n_bytes: int) -> str:
    """Bytes in decimal gigabytes, as disk sizes are sold (``"7.6 GB"``)."""
    return f"{n_bytes / 1e9:.1f} GB"


@dataclass(frozen=True)
class DiskNeed:
    purpose: DiskPurpose
    path: str
    needed_bytes: int


@dataclass(frozen=True)
class FilesystemCheck:
    """Purposes that share one filesystem, what they need together, what is free."""

    purposes: tuple[str, ...]
    path: str
    needed_bytes: int
    free_bytes: int | None  # None: could not be measured

    @property
    def enough(self) -> bool | None:
        if self.free_bytes is None:
            return None
        return self.free_bytes >= self.needed_bytes + DISK_HEADROOM_BYTES


def disk_needs(
    machine: Machine, spec: ModelEnvSpec, settings: EnvSettings, build: TorchBuild, backend: str
) -> tuple[DiskNeed, ...]:  # ``build``: the wheel installed, whatever device it runs on
    disk = spec.disk
    weights = disk.weights_bytes
    if settings.checkpoint_path is not None and backend == "meta":
        weights = 0  # the meta backend loads the local checkpoint instead
    cache = disk.cache_bytes_cuda if build.is_cuda else disk.cache_bytes_cpu
    env_disk, cache_disk = machine.disk("environment"), machine.disk("cache")
    same_drive = bool(env_disk and cache_disk and env_disk.device is not None) and (
        env_disk.device == cache_disk.device  # type: ignore[union-attr]
    )
    if same_drive:  # uv hard-links its cached files into the environment
        cache = disk.cache_linked_bytes_cuda if build.is_cuda else disk.cache_linked_bytes_cpu
    needed: dict[DiskPurpose, int] = {
        "environment": disk.env_bytes_cuda if build.is_cuda else disk.env_bytes_cpu,
        "cache": cache,
        "weights": weights,
    }
    targets = disk_targets(settings)
    return tuple(
        DiskNeed(purpose, m.path if (m := machine.disk(purpose)) else str(targets[purpose]), n)
        for purpose, n in needed.items()
    )


def filesystems_of(machine: Machine, needs: tuple[DiskNeed, ...]) -> tuple[FilesystemCheck, ...]:
    """Group purposes by filesystem (device id); unmeasured ones stand alone."""
    groups: dict[object, list[DiskNeed]] = {}
    free: dict[object, int | None] = {}
    for need in needs:
        measured = machine.disk(need.purpose)
        if measured is not None and measured.device is not None:
            key: object = ("device", measured.device)
        else:
            key = ("path", need.path)
        groups.setdefault(key, []).append(need)
        free.setdefault(key, measured.free_bytes if measured else None)
    return tuple(
        FilesystemCheck(
            purposes=tuple(n.purpose for n in members),
            path=members[0].path,
            needed_bytes=sum(n.needed_bytes for n in members),
            free_bytes=free[key],
        )
        for key, members in groups.items()
    )


def disk_verdict(
    build: TorchBuild, needs: tuple[DiskNeed, ...], filesystems: tuple[FilesystemCheck, ...]
) -> tuple[str, list[str], list[str]]:
    sizes = {n.purpose: gb(n.needed_bytes) for n in needs}
    where = "; ".join(
        f"{fs.path} ({' + '.join(fs.purposes)}) needs {gb(fs.needed_bytes)} and has "
        + ("an unknown amount free" if fs.free_bytes is None else f"{gb(fs.free_bytes)} free")
        for fs in filesystems
    )
    weights = sizes["weights"] if sizes["weights"] != gb(0) else "nothing (local checkpoint)"
    linked = any({"environment", "cache"} <= set(fs.purposes) for fs in filesystems)
    cache = f"{sizes['cache']} for uv's download cache" + (
        " (beyond the files uv hard-links into the environment on the same drive)" if linked else ""
    )
    reason = (
        f"The {build.name} build needs {sizes['environment']} for the environment, "
        f"{cache} and {weights} for the SAM 3 weights, "
        f"plus {gb(DISK_HEADROOM_BYTES)} to spare per drive: {where}."
    )
    problems, warnings = [], []
    for fs in filesystems:
        if fs.enough is None:
            warnings.append(f"The free space at {fs.path} could not be measured.")
        elif not fs.enough:
            short = fs.needed_bytes + DISK_HEADROOM_BYTES - (fs.free_bytes or 0)
            problems.append(
                f"Not enough disk space on the drive holding {fs.path} "
                f"({' + '.join(fs.purposes)}): the install needs {gb(fs.needed_bytes)} plus "
                f"{gb(DISK_HEADROOM_BYTES)} to spare and {gb(fs.free_bytes or 0)} is free. Free "
                f"at least {gb(short)} there, or move geolibre-ml's folders to a larger drive "
                f"with GEOLIBRE_ML_HOME (uv's download cache with UV_CACHE_DIR)."
            )
    return reason, problems, warnings
