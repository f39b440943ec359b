"""The doctor's report as data: checks that end in ok, warning or failure, and the
verdict over them (shared by the checks' modules and the report's printers)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from geolibre_env.redact import redact_mapping

Status = Literal["ok", "warning", "failure"]


@dataclass
class Check:
    id: str
    title: str
    status: Status
    detail: str
    fix: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    checks: list[Check]
    created_at: float = field(default_factory=time.time)
    seconds: float = 0.0

    @property
    def verdict(self) -> Status:
        statuses = {check.status for check in self.checks}
        return "failure" if "failure" in statuses else "warning" if "warning" in statuses else "ok"

    @property
    def summary(self) -> str:
        failures = [c for c in self.checks if c.status == "failure"]
        warnings = [c for c in self.checks if c.status == "warning"]
        if failures:
            first = failures[0]
            return f"Segmentation will not work: {first.detail} {first.fix or ''}".strip()
        if warnings:
            return (
                f"Segmentation should work, with {len(warnings)} warning(s): {warnings[0].detail}"
            )
        return "Everything needed for segmentation is in place."

    def to_dict(self) -> dict[str, Any]:
        data = {
            "verdict": self.verdict,
            "summary": self.summary,
            "created_at": self.created_at,
            "seconds": round(self.seconds, 3),
            "checks": [asdict(check) for check in self.checks],
        }
        return redact_mapping(data)
