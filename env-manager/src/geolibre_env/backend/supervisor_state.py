"""What the supervisor is configured with and what it reports: its states, the
launch it runs, its timings and the last health probes. No I/O and no httpx, so
the launch resolution (and anything else that only names these) stays light.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from geolibre_env.backend.restart_policy import RestartPolicy
from geolibre_env.paths import Paths

LOOPBACK = "127.0.0.1"


class BackendState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    RESTARTING = "restarting"
    FAILED = "failed"
    EXTERNAL = "external"


@dataclass(frozen=True)
class LaunchSpec:
    """What to run (``--host/--port`` are appended) and where it came from."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    source: str
    cwd: Path | None = None


@dataclass(frozen=True)
class BackendFiles:
    """Where one supervised samgeo-api keeps its log, its record (for leftovers) and its
    last status (for the CLI). The main backend uses the data folder's own; each extra
    one (one per GPU) has files named after it, so two never overwrite each other."""

    log: Path
    record: Path
    status: Path
    name: str = ""  # "" for the main backend

    @classmethod
    def of(cls, paths: Paths, name: str = "") -> BackendFiles:
        if not name:
            return cls(paths.backend_log, paths.backend_state, paths.supervisor_status)
        return cls(
            paths.logs / f"samgeo-api-{name}.log",
            paths.state / f"backend-{name}.json",
            paths.state / f"supervisor-{name}.json",
            name,
        )


@dataclass(frozen=True)
class SupervisorConfig:
    start_stall_s: float = 60.0
    start_timeout_s: float = 900.0
    probe_interval_s: float = 0.05
    health_interval_s: float = 10.0
    health_timeout_s: float = 5.0
    hang_restart_s: float = 1800.0
    idle_unload_s: float = 0.0  # 0: never unload
    stop_timeout_s: float = 10.0
    port_retries: int = 2
    policy: RestartPolicy = field(default_factory=RestartPolicy)


@dataclass
class Health:
    """What the last probes said; status answers from this, never from a live probe."""

    version: str | None = None
    models: dict[str, Any] | None = None
    last_ok_at: float | None = None
    last_error: str | None = None
    unresponsive_since: float | None = None


def free_port(host: str = LOOPBACK) -> int:
    """A port the OS says is free right now (a race remains; start-up retries on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
