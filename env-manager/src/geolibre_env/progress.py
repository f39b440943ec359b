"""Progress events: one shape for the terminal bar, the JSON lines the sidecar
reads from an install it started, and the server-sent events the app receives.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Unit = Literal["bytes", "packages", "steps"]
Level = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class ProgressEvent:
    """One step forward. ``done``/``total`` are in ``unit``; ``total`` may be unknown."""

    phase: str
    message: str
    done: int | None = None
    total: int | None = None
    unit: Unit | None = None
    level: Level = "info"
    at: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        if self.done is None or not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fraction"] = self.fraction
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProgressEvent:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


ProgressSink = Callable[[ProgressEvent], None]


def discard(_event: ProgressEvent) -> None:
    """A sink that drops events (library calls without a listener)."""


class CancelToken:
    """Set from any thread; long steps poll it and stop their subprocesses."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float) -> bool:
        return self._event.wait(timeout_s)
