"""The doctor's live look at the model environment, and the last good answer kept
beside it for when the live look cannot finish.

Measured on the 2-core test machine with the real environment (torch
2.14.1+cu130, Python 3.11): ``import torch`` took 1.9 to 7.2 s, 5.4 to 6.6 s at a
load average of 6; the quick probe (torch only) 4.9 s; ``samgeo.api`` 37 s on the
busy machine. The old 2-second limit therefore never let the check happen. The
quick probe now gets :data:`QUICK_PROBE_TIMEOUT_S`, four times the slowest
import seen; when even that is not enough, the doctor shows the last good
answer for this very environment (same build, same spec, same installed
packages) and says how old it is, never an answer for another environment.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from geolibre_env.errors import GeoLibreError
from geolibre_env.install.verify import VerifyReport, run_probe
from geolibre_env.model_env import ActiveEnvironment, read_json, write_json_atomic

__all__ = ["QUICK_PROBE_TIMEOUT_S", "ProbeOutcome", "probe_active", "remember_probe"]

QUICK_PROBE_TIMEOUT_S = 30.0
PROBE_FILE = ".geolibre-install/last-probe.json"


@dataclass(frozen=True)
class ProbeOutcome:
    report: VerifyReport
    live: bool  # checked just now
    checked_at: float | None  # when the answer was got (None: unknown)
    note: str  # "checked now", "checked 4 min ago; the live check ...", ...


def _key(active: ActiveEnvironment) -> dict[str, Any]:
    """What must match for a kept answer to describe this environment."""
    site = active.site_packages
    mtime = None
    if site is not None:
        with contextlib.suppress(OSError):
            mtime = site.stat().st_mtime_ns  # changes when a package is added or removed
    return {
        "env": active.name,
        "plan_hash": active.record.get("plan_hash"),
        "spec": active.record.get("spec_fingerprint"),
        "site_packages_mtime": mtime,
    }


def remember_probe(active: ActiveEnvironment, report: VerifyReport, *, at: float) -> None:
    """Keep ``report`` as the last good answer for ``active`` (best effort)."""
    with contextlib.suppress(OSError):
        write_json_atomic(
            active.root / PROBE_FILE, {"key": _key(active), "at": at, "report": report.data}
        )


def age(seconds: float) -> str:
    """``"40 s"``, ``"4 min"``, ``"3 h"``, ``"2 days"``."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def probe_active(
    active: ActiveEnvironment, *, timeout_s: float = QUICK_PROBE_TIMEOUT_S
) -> ProbeOutcome:
    """Import torch in ``active`` now; else the last good answer for it, with its age."""
    started = time.time()
    try:
        report = run_probe(active.python, quick=True, timeout_s=timeout_s)
    except GeoLibreError as exc:
        message = exc.message.rstrip(".")
        timed_out = "did not answer within" in message
        why = f"no live answer within {timeout_s:g} s" if timed_out else f"live check: {message}"
    else:
        if report.ok:
            remember_probe(active, report, at=started)
        return ProbeOutcome(report, True, started, "checked now")
    kept = read_json(active.root / PROBE_FILE) or {}
    if kept.get("key") == _key(active) and isinstance(kept.get("report"), dict):
        at = float(kept.get("at") or 0.0)
        note = f"checked {age(time.time() - at)} ago; {why}"
        return ProbeOutcome(VerifyReport(kept["report"]), False, at, note)
    at = active.record.get("created_at")
    when = f", {age(time.time() - float(at))} ago" if at else ""
    note = f"recorded at install time{when}; {why}"
    return ProbeOutcome(VerifyReport(active.verify), False, at, note)
