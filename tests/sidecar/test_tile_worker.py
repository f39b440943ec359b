"""The tile worker's supervision with a real process that cannot serve (``false`` in
place of the model environment's Python, under the real guard): the restart policy
retries, then a crash loop fails the step with one sentence, and the next step (a
new job) tries again. The worker's life with the real model environment is in
tests/realstack/test_jobs_worker.py."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from geolibre_sidecar.jobs.worker import TileWorker, WorkerFailed
from geolibre_sidecar.settings import SidecarSettings

# The backend's restart settings apply to the worker too: two quick retries.
FAST = {"GEOLIBRE_ML_RESTART_LIMIT": "2", "GEOLIBRE_ML_RESTART_BACKOFF_S": "0.01"}


async def ignore(_event: dict[str, Any]) -> None:
    pass


def test_a_worker_that_dies_at_once_ends_in_a_crash_loop_and_the_next_step_tries_again(
    tmp_path: Path,
) -> None:
    false = shutil.which("false")
    assert false is not None
    settings = SidecarSettings.from_environ({"GEOLIBRE_ML_HOME": str(tmp_path), **FAST})
    worker = TileWorker(settings, lambda: Path(false))

    async def scenario() -> list[str]:
        details = []
        try:
            for _ in range(2):
                with pytest.raises(WorkerFailed) as failed:
                    await worker.run("cut", ["raster", "folder", "256", "0"], ignore)
                details.append(failed.value.detail)
                assert worker.snapshot()["state"] == "failed"
        finally:
            await worker.aclose()
        return details

    details = asyncio.run(scenario())
    assert details[0] == details[1]
    assert details[0].startswith("The tile worker cannot run: crash loop: it crashed 3 times")
    assert "Traceback" not in details[0] and details[0].endswith(".")
    # Two restarts each time: the second step started it again rather than give up.
    assert worker.restarts == 4
    assert worker.snapshot()["last_exit"] == "exit code 1"
    log = (tmp_path / "logs" / "tile-worker.log").read_text(encoding="utf-8")
    assert log.count("geolibre guard: backend ended with exit code 1") == 6
