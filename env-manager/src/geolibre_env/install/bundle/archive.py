"""The offline bundle: one tar archive with everything an air-gapped install needs.

Layout: ``manifest.json`` first (format, target, the plan, and the sha256 and
size of every other file), then ``wheels/``, ``weights/`` and ``vocab/``. The
archive is plain (uncompressed) tar: wheels and weights are compressed
already, and a stream can be checked as it is read.

Opening a bundle checks every file against the manifest *while* copying it
into a staging folder: a file that differs, is missing, is extra, or an
archive that ends early is refused, the staging folder is removed, and
nothing has been installed. The manifest proves integrity (a damaged or
truncated copy), not origin: compare the archive's sha256 that the export
printed when that matters.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import posixpath
import shutil
import stat
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geolibre_env.errors import InstallCancelledError
from geolibre_env.install.failures import (
    ClassifiedInstallError,
    InstallFailure,
    classify_install_failure,
)
from geolibre_env.progress import CancelToken

FORMAT = "geolibre-ml-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_MAX_BYTES = 16 * 2**20
COPY_BLOCK_BYTES = 1 << 20
DISK_MARGIN_BYTES = 100_000_000
FOLDERS = ("wheels", "weights", "vocab")
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)
NEW_COPY = (
    "Copy the bundle to this computer again (compare its sha256 with the one the export "
    "printed), or export a new one."
)


class BundleError(ClassifiedInstallError):
    """The bundle cannot be used; nothing was installed from it."""

    def __init__(self, summary: str, hint: str, *, kind: str = "bundle") -> None:
        super().__init__(InstallFailure(kind, summary, hint))


@dataclass(frozen=True)
class BundleFile:
    path: str  # inside the archive, "/" separated
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    data: dict[str, Any]

    @property
    def files(self) -> dict[str, BundleFile]:
        return {
            path: BundleFile(path, str(item["sha256"]), int(item["size"]))
            for path, item in self.data["files"].items()
        }

    @property
    def target(self) -> dict[str, Any]:
        return dict(self.data["target"])

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    @classmethod
    def parse(cls, raw: bytes, archive: Path) -> Manifest:
        try:
            data = json.loads(raw.decode("utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError("not a geolibre-ml bundle")
            if int(data.get("version", 0)) > FORMAT_VERSION:
                raise _TooNew()
            manifest = cls(data)
            for path in manifest.files:
                _check_member_name(path)
            manifest.target  # noqa: B018 - must be present
        except _TooNew:
            raise BundleError(
                f"{archive.name} was made by a newer geolibre-ml (bundle format "
                f"{data.get('version')}).",
                "Update geolibre-ml on this computer, or export the bundle with this version.",
            ) from None
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            raise BundleError(
                f"{archive.name} is not a geolibre-ml offline bundle, or its manifest is damaged.",
                "Make the bundle with `geolibre-ml bundle export` and copy it again.",
            ) from None
        return manifest


class _TooNew(Exception):
    pass


@dataclass(frozen=True)
class OpenedBundle:
    """A verified bundle unpacked into ``root`` (the caller removes it when done)."""

    archive: Path
    root: Path
    manifest: Manifest

    @property
    def wheels(self) -> Path:
        return self.root / "wheels"

    def path(self, member: str) -> Path:
        return self.root / Path(*member.split("/"))


def _check_member_name(path: str) -> None:
    """Only plain relative names inside our folders: nothing can land outside staging."""
    parts = path.split("/")
    if (
        posixpath.normpath(path) != path
        or path.startswith("/")
        or "\\" in path
        or ":" in path
        or ".." in parts
        or len(parts) < 2
        or parts[0] not in FOLDERS
    ):
        raise ValueError(f"unsafe member name {path!r}")


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256, size) of a file, read once."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while block := handle.read(COPY_BLOCK_BYTES):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def write_bundle(
    dest: Path,
    manifest: dict[str, Any],
    members: Iterable[tuple[str, Path]],
    *,
    progress: Progress | None = None,
) -> tuple[str, int]:
    """Write the archive (manifest first) to ``dest`` atomically; its (sha256, size).

    ``manifest["files"]`` must already list every member with its digest.
    """
    members = list(members)
    partial = dest.with_name(dest.name + ".partial")
    raw = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
    total = sum(path.stat().st_size for _, path in members)
    done = 0
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(_info(MANIFEST, len(raw)), io.BytesIO(raw))
        for name, path in members:
            with path.open("rb") as handle:
                archive.addfile(_info(name, path.stat().st_size), handle)
            done += path.stat().st_size
            if progress is not None:
                progress(done, total)
    digest, size = file_digest(partial)
    partial.replace(dest)
    return digest, size


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, int(time.time())
    return info


def read_manifest(archive: Path) -> Manifest:
    """Only the manifest (the first member): what a bundle is for, without checking it."""
    try:
        with tarfile.open(archive, "r|") as stream:
            first = stream.next()
            handle = stream.extractfile(first) if first is not None else None
            if first is None or first.name != MANIFEST or handle is None:
                raise BundleError(f"{archive.name} is not a geolibre-ml offline bundle.", NEW_COPY)
            return Manifest.parse(handle.read(MANIFEST_MAX_BYTES), archive)
    except (OSError, tarfile.TarError, EOFError):
        raise _incomplete(archive.name, NEW_COPY) from None


def not_a_bundle_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as an archive (never opened: a FIFO would block), or None."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link that loops back on itself"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "does not exist"
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a bundle file (give the .tar file made by `bundle export`)"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a bundle file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a bundle file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a bundle file"
    return "is not a regular file"


def open_bundle(
    archive: Path,
    staging: Path,
    *,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> OpenedBundle:
    """Verify every file of ``archive`` while unpacking it into ``staging``.

    Raises :class:`BundleError` (and removes ``staging``) for anything that does not
    match the manifest; returns only a bundle whose every byte was checked.
    """
    if (wrong := not_a_bundle_file(archive)) is not None:
        raise BundleError(
            f"The offline bundle {archive} {wrong}.", "Check the path given to --from."
        )
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        manifest = _unpack(archive, staging, progress, cancel)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return OpenedBundle(archive=archive, root=staging, manifest=manifest)


def _unpack(
    archive: Path, staging: Path, progress: Progress | None, cancel: CancelToken | None
) -> Manifest:
    name, damaged = archive.name, NEW_COPY
    try:
        with tarfile.open(archive, "r|") as stream:
            first = stream.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise BundleError(f"{name} is not a geolibre-ml offline bundle.", damaged)
            if first.size > MANIFEST_MAX_BYTES:
                raise BundleError(f"{name} has an oversized manifest.", damaged)
            handle = stream.extractfile(first)
            assert handle is not None
            manifest = Manifest.parse(handle.read(), archive)
            _check_disk(staging, manifest)
            expected, seen, done = manifest.files, set[str](), 0
            while (member := stream.next()) is not None:
                if member.isdir():
                    continue
                item = expected.get(member.name)
                if item is None or member.name in seen or not member.isfile():
                    raise BundleError(
                        f"{name} holds {member.name!r}, which its manifest does not list, so "
                        f"it was refused; nothing was installed.",
                        damaged,
                        kind="checksum",
                    )
                done = _copy_checked(stream, member, item, staging, name, damaged, done)
                seen.add(member.name)
                if progress is not None:
                    progress(done, manifest.total_bytes)
                if cancel is not None and cancel.cancelled:
                    raise InstallCancelledError("The install was cancelled.")
    except OSError as exc:
        if exc.errno is None:  # tarfile's own read errors on a cut-off stream
            raise _incomplete(name, damaged) from None
        # Writing into staging failed: the disk, permissions or the path.
        raise ClassifiedInstallError(classify_install_failure(str(exc))) from None
    except (tarfile.TarError, EOFError):
        raise _incomplete(name, damaged) from None
    missing = sorted(set(expected) - seen)
    if missing:
        raise BundleError(
            f"{name} is incomplete: {len(missing)} of its files are missing (the first is "
            f"{missing[0]}), so it was refused; nothing was installed.",
            damaged,
            kind="checksum",
        )
    return manifest


def _incomplete(name: str, hint: str) -> BundleError:
    return BundleError(
        f"{name} is incomplete or damaged (it ends early or is not a tar archive), so it "
        f"was refused; nothing was installed.",
        hint,
        kind="checksum",
    )


def _copy_checked(
    stream: tarfile.TarFile,
    member: tarfile.TarInfo,
    item: BundleFile,
    staging: Path,
    name: str,
    damaged: str,
    done: int,
) -> int:
    source = stream.extractfile(member)
    assert source is not None
    target = staging / Path(*member.name.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with target.open("wb") as out:
        while block := source.read(COPY_BLOCK_BYTES):
            digest.update(block)
            out.write(block)
            size += len(block)
    if size != item.size or digest.hexdigest() != item.sha256:
        raise BundleError(
            f"{member.name} in {name} does not match its checksum (the copy is damaged or "
            f"was altered), so the bundle was refused; nothing was installed.",
            damaged,
            kind="checksum",
        )
    return done + size


def _check_disk(staging: Path, manifest: Manifest) -> None:
    free = shutil.disk_usage(staging).free
    needed = manifest.total_bytes + DISK_MARGIN_BYTES
    if free < needed:
        raise BundleError(
            f"Not enough free disk to unpack the offline bundle: {needed / 1e9:.1f} GB needed "
            f"in {staging}, {free / 1e9:.1f} GB free.",
            "Free some space (or move GEOLIBRE_ML_HOME to a larger drive), then run the "
            "install again.",
            kind="disk-full",
        )
