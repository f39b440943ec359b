"""Slow facts for ``/ml/status``: the GPU and what the installed torch can use.

Gathered off the request path (a worker thread) when the sidecar starts and
after an install, so status stays fast and still tells the user what the
machine can and cannot do. The weights are not among them: they can come and
go at any time (see :mod:`geolibre_sidecar.weights_gate`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from geolibre_env.machine import detect_machine
from geolibre_env.model_env import active_environment
from geolibre_env.settings import EnvSettings

log = logging.getLogger("geolibre.sidecar")

NO_GPU_HINT = (
    "This computer has no usable NVIDIA GPU, so SAM 3's meta backend cannot run here: use "
    'backend "transformers" (it runs on the CPU; expect minutes per image).'
)


class EnvironmentInfo:
    def __init__(self, settings: EnvSettings, *, managed: bool) -> None:
        self.settings = settings
        self.managed = managed
        self._data: dict[str, Any] | None = None

    def snapshot(self) -> dict[str, Any] | None:
        return self._data

    async def refresh(self) -> None:
        try:
            self._data = await asyncio.to_thread(self._collect)
        except Exception:  # status must work without these facts
            log.warning("could not collect GPU and weights facts", exc_info=True)

    def _collect(self) -> dict[str, Any]:
        settings = self.settings
        machine = detect_machine(settings, pythons=())
        active = active_environment(settings.paths)
        cuda_working = bool(active and active.record.get("cuda_working"))
        accelerator: dict[str, Any] = {
            "gpus": [gpu.to_dict() for gpu in machine.gpus],
            "driver": machine.driver_version,
            "nvidia_smi_error": machine.nvidia_smi_error,
            "apple_silicon": machine.apple_silicon,
            "model_env_build": active.build if active else None,
            "cuda_working": cuda_working if active else None,
            "summary": machine.describe(),
        }
        gpu_usable = bool(machine.gpus) and (cuda_working or active is None)
        accelerator["meta_backend_possible"] = gpu_usable
        accelerator["hint"] = None if gpu_usable else NO_GPU_HINT
        return {"accelerator": accelerator}
