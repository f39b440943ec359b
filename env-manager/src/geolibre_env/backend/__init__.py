"""The managed samgeo-api process: how it is launched, supervised and explained.

Mechanics (:mod:`.process`, :mod:`.process_guard`) are kept apart from the rules
(:mod:`.supervisor`, :mod:`.running`, :mod:`.restart_policy`). The names below
load on first use:
``python -m geolibre_env.backend.process_guard`` runs for as long as samgeo-api
does and must not carry the supervisor, httpx and the weights code with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geolibre_env.backend.exit_causes import HINTS, ExitCause, Explanation, explain_answer
    from geolibre_env.backend.launch import managed_launch_variables, pin_to_gpu, resolve_launch
    from geolibre_env.backend.record import BackendRecord, read_record
    from geolibre_env.backend.restart_policy import RestartPolicy
    from geolibre_env.backend.supervisor import Supervisor
    from geolibre_env.backend.supervisor_state import (
        BackendFiles,
        BackendState,
        Health,
        LaunchSpec,
        SupervisorConfig,
    )

_WHERE = {
    "HINTS": "exit_causes",
    "ExitCause": "exit_causes",
    "Explanation": "exit_causes",
    "explain_answer": "exit_causes",
    "managed_launch_variables": "launch",
    "pin_to_gpu": "launch",
    "resolve_launch": "launch",
    "BackendRecord": "record",
    "read_record": "record",
    "RestartPolicy": "restart_policy",
    "BackendFiles": "supervisor_state",
    "BackendState": "supervisor_state",
    "Health": "supervisor_state",
    "LaunchSpec": "supervisor_state",
    "Supervisor": "supervisor",
    "SupervisorConfig": "supervisor_state",
}

__all__ = [
    "HINTS",
    "BackendFiles",
    "BackendRecord",
    "BackendState",
    "ExitCause",
    "Explanation",
    "Health",
    "LaunchSpec",
    "RestartPolicy",
    "Supervisor",
    "SupervisorConfig",
    "explain_answer",
    "managed_launch_variables",
    "pin_to_gpu",
    "read_record",
    "resolve_launch",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
