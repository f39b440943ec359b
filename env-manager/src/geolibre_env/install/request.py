"""What an install is asked for and what it answers: shared by the provisioner,
the offline-bundle install, the CLI and the sidecar's install job."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class InstallRequest:
    """What the user asked for (CLI flags or the app's install request)."""

    backend: str | None = None
    build: str | None = None
    token: str | None = field(default=None, repr=False)
    checkpoint: Path | None = None
    wait: bool = False
    weights: bool = True
    force: bool = False
    bundle: Path | None = None  # install from this offline bundle, with no network
    model: str | None = None  # another checkpoint to fetch (weights_models.OTHER_MODELS)


@dataclass
class InstallResult:
    outcome: str  # "installed" | "up-to-date"
    env: str
    env_path: str
    plan: dict[str, Any]
    verify: dict[str, Any]
    weights: dict[str, Any] | None = None
    weights_error: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.weights_error is None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["complete"] = self.complete
        return data
