"""``POST /ml/backend/start``: answer at once, or wait for the outcome when asked.

A start takes seconds to minutes (samgeo-api loads torch and the model), longer
than many HTTP clients wait; so the route answers ``202`` with the status
(``state: starting``) and the app follows ``/ml/status``. ``?wait=1`` waits for
ready or failed, at most :data:`START_WAIT_S` (``&timeout_s=N`` for another limit).
"""

from __future__ import annotations

from collections.abc import Mapping

from geolibre_sidecar.errors import BadRequest

START_WAIT_S = 120.0
MAX_WAIT_S = 900.0  # GEOLIBRE_ML_START_TIMEOUT_S's default: no start is waited on longer
_YES = {"1", "true", "yes"}
_NO = {"", "0", "false", "no"}
STILL_GOING = ("starting", "restarting")


def wait_seconds(query: Mapping[str, str]) -> float:
    """How long the request asked to wait (0: not at all); a bad value is a 400."""
    wait = query.get("wait", "").strip().lower()
    if wait not in _YES | _NO:
        raise BadRequest(f"wait must be 1 or 0, not {wait[:40]!r}.")
    if wait in _NO:
        if "timeout_s" in query:
            raise BadRequest("timeout_s needs wait=1.")
        return 0.0
    raw = query.get("timeout_s")
    if raw is None:
        return START_WAIT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_WAIT_S:
        raise BadRequest(f"timeout_s must be a number of seconds from 1 to {MAX_WAIT_S:g}.")
    return seconds


def answer_status(state: str) -> int:
    """202 while the start is still under way, 200 once it has an outcome."""
    return 202 if state in STILL_GOING else 200
