"""The managed samgeo-api process: how it is launched, supervised and explained.

Mechanics (:mod:`.process`, :mod:`.process_guard`) are kept apart from the rules
(:mod:`.supervisor`, :mod:`.restart_policy`). ``process_guard`` is not imported
here: it runs as ``python -m geolibre_env.backend.process_guard``.
"""

from geolibre_env.backend.exit_causes import HINTS, ExitCause, Explanation, explain_answer
from geolibre_env.backend.launch import managed_backend_environment
from geolibre_env.backend.record import BackendRecord, read_record
from geolibre_env.backend.restart_policy import RestartPolicy
from geolibre_env.backend.supervisor import (
    BackendState,
    Health,
    LaunchSpec,
    Supervisor,
    SupervisorConfig,
)

__all__ = [
    "HINTS",
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
    "managed_backend_environment",
    "read_record",
]
