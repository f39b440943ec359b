"""The doctor's port check: who listens on the ports GeoLibre uses, named in full,
telling our own processes (this sidecar, the sidecar that runs the backend, the
backend itself) from strangers.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import psutil

from geolibre_env.backend.record import read_record, read_status
from geolibre_env.report.types import Check
from geolibre_env.settings import EnvSettings

LEGACY_SIDECAR_PORT = 8765  # the port older GeoLibre builds hard-code
# Linux keeps only the first 15 characters of a process name (the kernel's comm).
_COMM_LIMIT = 15
_SIDECAR_NAMES = ("geolibre-sidecar", "geolibre_sidecar", "geolibre_bridge")


def process_label(pid: int) -> str:
    """``name (pid N)`` with the name in full, where psutil's ``name()`` is cut short."""
    try:
        proc = psutil.Process(pid)
        name = proc.name()
    except psutil.Error:
        return f"pid {pid}"
    if len(name) >= _COMM_LIMIT:
        with contextlib.suppress(psutil.Error):
            # A script run by its shebang: argv[0] is the interpreter, argv[1] the script.
            for arg in proc.cmdline()[:2]:
                base = os.path.basename(arg)
                if base.startswith(name):
                    name = base
                    break
    return f"{name} (pid {pid})"


def _is_sidecar(pid: int) -> bool:
    """Whether ``pid`` runs GeoLibre ML's sidecar (the launcher or ``-m geolibre_sidecar``)."""
    with contextlib.suppress(psutil.Error):
        cmdline = psutil.Process(pid).cmdline()[:4]
        return any(os.path.basename(arg).startswith(_SIDECAR_NAMES) for arg in cmdline)
    return False


def _backend_family(pid: int | None, record_pid: int | None) -> bool:
    """Whether ``pid`` is the recorded backend's guard or one of its descendants."""
    if not pid or not record_pid:
        return False
    with contextlib.suppress(psutil.Error):
        guard = psutil.Process(record_pid)
        return pid == record_pid or pid in {p.pid for p in guard.children(recursive=True)}
    return False


def whose(
    pid: int, *, this_sidecar: int | None, runs_backend: int | None, record_pid: int | None
) -> str | None:
    """How a listener is ours, in words; None for a stranger."""
    if this_sidecar and pid == this_sidecar:
        return "this GeoLibre ML sidecar"
    if runs_backend and pid == runs_backend and _is_sidecar(pid):
        return "the GeoLibre ML sidecar that runs the backend"
    if _backend_family(pid, record_pid):
        return "the backend (samgeo-api)"
    if _is_sidecar(pid):
        return "another GeoLibre ML sidecar"
    return None


def check_ports(
    settings: EnvSettings,
    *,
    sidecar_pid: int | None = None,
    legacy_port: int = LEGACY_SIDECAR_PORT,
) -> Check:
    """Who holds the ports we use: a stranger on 8765 or on the backend's port is a
    warning; our own sidecar or backend there is fine. ``sidecar_pid``: the sidecar
    this report is served by, if any."""
    ports: dict[int, str] = {legacy_port: "GeoLibre's old fixed sidecar port"}
    record = read_record(settings.paths.backend_state)
    record_pid = None
    if record is not None:
        ports[record.port] = "the backend's port"
        record_pid = record.identity.pid if record.identity.is_alive() else None
    running = read_status(settings.paths.supervisor_status) or {}
    runs_backend = int(running.get("sidecar_pid") or 0) or None
    strangers: list[str] = []
    ours: list[str] = []
    data: dict[str, Any] = {}
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return Check("ports", "Ports", "ok", "Could not list listening ports (not permitted).")
    for conn in connections:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port not in ports:
            continue
        port = conn.laddr.port
        if not conn.pid:
            data[str(port)] = "another user's program"
            strangers.append(f"{ports[port]} {port} is held by another user's program")
            continue
        label = process_label(conn.pid)
        data[str(port)] = label
        owner = whose(
            conn.pid, this_sidecar=sidecar_pid, runs_backend=runs_backend, record_pid=record_pid
        )
        if owner is None:
            strangers.append(f"{ports[port]} {port} is held by {label}")
        elif port == legacy_port:
            ours.append(f"port {port} is used by {owner}, {label}")
    if not strangers:
        detail = "No stale process holds a port we use" + (f"; {'; '.join(ours)}." if ours else ".")
        return Check("ports", "Ports", "ok", detail, data=data)
    return Check(
        "ports", "Ports", "warning", "; ".join(strangers) + ".",
        "If that is an old GeoLibre sidecar or samgeo-api, stop it (or restart the computer); "
        "the sidecar itself always picks a free port.", data,
    )  # fmt: skip
