"""The step journal of one environment build: what started, what finished.

A re-run reads it to resume instead of starting over; a step that started but
never finished (the installer was killed) is redone with ``--reinstall`` so a
half-written package cannot survive.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from geolibre_env.model_env import JOURNAL, read_json, write_json_atomic


class Journal:
    def __init__(self, root: Path, plan_hash: str) -> None:
        self.path = root / JOURNAL
        existing = read_json(self.path)
        if existing and existing.get("plan_hash") == plan_hash:
            self.data: dict[str, Any] = existing
        else:
            self.data = {"plan_hash": plan_hash, "created_at": time.time(), "steps": {}}

    @staticmethod
    def plan_hash_of(root: Path) -> str | None:
        data = read_json(root / JOURNAL)
        return data.get("plan_hash") if data else None

    def _step(self, name: str) -> dict[str, Any]:
        return self.data["steps"].setdefault(name, {})

    def done(self, name: str) -> bool:
        return bool(self.data["steps"].get(name, {}).get("done_at"))

    def interrupted(self, name: str) -> bool:
        """Started by an earlier run that never finished it."""
        step = self.data["steps"].get(name, {})
        return bool(step.get("started_at")) and not step.get("done_at")

    def start(self, name: str) -> None:
        step = self._step(name)
        step["started_at"] = time.time()
        step.pop("done_at", None)
        write_json_atomic(self.path, self.data)

    def finish(self, name: str, **info: Any) -> None:
        step = self._step(name)
        step.update(info, done_at=time.time())
        write_json_atomic(self.path, self.data)

    def forget(self, *names: str) -> None:
        for name in names:
            self.data["steps"].pop(name, None)
        write_json_atomic(self.path, self.data)
