"""The state file that remembers which samgeo-api this sidecar started.

It lets a new sidecar find a backend an earlier one left behind (after a
crash, or a kill the guard could not act on) and either adopt it or stop it,
without ever touching a process that merely reuses a recorded pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from geolibre_env.backend.process import ProcessIdentity
from geolibre_env.paths import Paths


@dataclass(frozen=True)
class BackendRecord:
    """One running backend: the guard's identity and where it listens."""

    identity: ProcessIdentity
    url: str
    port: int
    command: tuple[str, ...]
    started_at: float
    sidecar_pid: int

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["identity"] = self.identity.to_dict()
        data["command"] = list(self.command)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> BackendRecord:
        ident = data["identity"]
        return cls(
            identity=ProcessIdentity(
                int(ident["pid"]), float(ident["create_time"]), tuple(ident["cmdline"])
            ),
            url=str(data["url"]),
            port=int(data["port"]),
            command=tuple(data["command"]),
            started_at=float(data.get("started_at", time.time())),
            sidecar_pid=int(data.get("sidecar_pid", 0)),
        )


def write_record(path: Path, record: BackendRecord) -> None:
    """Write atomically: a reader sees the old record or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=2), encoding="utf-8")
    os.replace(tmp, path)


def write_status(path: Path, snapshot: dict) -> None:
    """The supervisor's latest snapshot, stamped with the sidecar's pid (for the CLI)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**snapshot, "sidecar_pid": os.getpid(), "written_at": time.time()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_status(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def extra_backend_statuses(paths: Paths) -> list[dict]:
    """The last status of each extra backend (one per GPU: ``BackendFiles.of`` names
    their files), those whose sidecar is gone marked stopped."""
    found = []
    for path in sorted(paths.state.glob("supervisor-*.json")):
        status = read_status(path)
        if status is None:
            continue
        if not psutil.pid_exists(int(status.get("sidecar_pid") or 0)):
            status = {**status, "state": "stopped", "cause": "no sidecar is running"}
        found.append(status)
    return found


def read_record(path: Path) -> BackendRecord | None:
    """The recorded backend, or None if there is none or the file is unreadable."""
    try:
        return BackendRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def clear_record(path: Path, *, only_pid: int | None = None) -> None:
    """Remove the record (only if it still names ``only_pid``, when given)."""
    if only_pid is not None:
        current = read_record(path)
        if current is not None and current.identity.pid != only_pid:
            return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
