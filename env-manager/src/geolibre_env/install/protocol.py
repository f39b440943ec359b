"""The contract between ``geolibre-ml install --events`` and the sidecar that runs it.

Both sides import these names instead of repeating literals: the exit codes, the
names of the JSON events on stdout, and the options the sidecar passes. Changing
a value here changes the wire format, which the installed app relies on.
"""

from __future__ import annotations

from typing import Final

from geolibre_env.spec import SAM3_IMPLEMENTATIONS, Sam3Implementation

__all__ = [
    "EVENT_ERROR", "EVENT_PROGRESS", "EVENT_RESULT",
    "EXIT_CANCELLED", "EXIT_ERROR", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE",
    "OPT_BACKEND", "OPT_BUILD", "OPT_CHECKPOINT", "OPT_EVENTS", "OPT_FORCE", "OPT_FROM",
    "OPT_MODEL", "OPT_NO_WEIGHTS", "OPT_PARENT_PID", "OPT_TOKEN_STDIN",
    "SAM3_IMPLEMENTATIONS", "Sam3Implementation",
]  # fmt: skip

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_PARTIAL: Final = 3  # the environment is installed, the weights are missing
EXIT_CANCELLED: Final = 130  # 128 + SIGINT, as a shell reports a Ctrl-C

# `{"event": ...}` lines on stdout with --events.
EVENT_PROGRESS: Final = "progress"
EVENT_RESULT: Final = "result"
EVENT_ERROR: Final = "error"

OPT_EVENTS: Final = "--events"
OPT_PARENT_PID: Final = "--parent-pid"
OPT_BACKEND: Final = "--backend"  # a Sam3Implementation
OPT_BUILD: Final = "--build"
OPT_CHECKPOINT: Final = "--checkpoint"
OPT_FROM: Final = "--from"
OPT_MODEL: Final = "--model"  # fetch this model's weights (weights.models.check_model)
OPT_NO_WEIGHTS: Final = "--no-weights"
OPT_FORCE: Final = "--force"
OPT_TOKEN_STDIN: Final = "--token-stdin"
