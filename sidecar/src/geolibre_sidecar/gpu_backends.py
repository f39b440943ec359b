"""One managed samgeo-api per NVIDIA GPU for tiled jobs, on a machine with several.

samgeo-api computes one request at a time on one GPU, so a job on a four-GPU machine
would use a quarter of it. When nvidia-smi lists two GPUs or more and the installed
model environment's CUDA works, the main backend is pinned to the first GPU (so two
models never share one by accident) and keeps serving ``/ml/segment/*``; each other
GPU gets a backend of its own, started when a job first sends it a tile (an interactive
user does not pay for N model loads) and stopped with the sidecar. They are
:class:`~geolibre_sidecar.backend.ManagedBackend` like the main one: the same
supervisor, restart policy and leftover rules, with their own log and record files.
``GEOLIBRE_ML_GPU_BACKENDS`` limits how many GPUs are used.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx
from geolibre_env.machine import Gpu, nvidia_gpus
from geolibre_env.model_env import active_environment

from geolibre_sidecar.backend import ManagedBackend
from geolibre_sidecar.settings import SidecarSettings

log = logging.getLogger("geolibre.sidecar")


def choose_gpus(gpus: Sequence[Gpu], *, cuda_working: bool, limit: int | None) -> tuple[Gpu, ...]:
    """The GPUs that get a backend each, first the main one's: none unless at least
    two are left after ``limit`` and CUDA works in the model environment."""
    chosen = tuple(sorted(gpus, key=lambda gpu: gpu.index))[:limit]
    return chosen if cuda_working and len(chosen) >= 2 else ()


def device_of(gpu: Gpu) -> str:
    """The CUDA_VISIBLE_DEVICES value for ``gpu``: its UUID, which no ordering changes."""
    return gpu.uuid or str(gpu.index)


def label_of(gpu: Gpu) -> str:
    """How status names the GPU a backend runs on."""
    return f"GPU {gpu.index}: {gpu.name}" + (f" ({gpu.uuid})" if gpu.uuid else "")


class GpuBackends:
    """Decides, once, which GPUs get a backend; owns the extra backends."""

    def __init__(
        self, settings: SidecarSettings, http: httpx.AsyncClient, main: ManagedBackend
    ) -> None:
        self.settings = settings
        self.http = http
        self.main = main
        main.before_start = self._pin_main
        self._choice: asyncio.Task[tuple[Gpu, ...]] | None = None
        self.extras: list[tuple[Gpu, ManagedBackend]] = []
        # The listing at start-up and a first job may ask at once: one creates them.
        self._creating = asyncio.Lock()

    async def gpus(self) -> tuple[Gpu, ...]:
        """The chosen GPUs (the main backend's first); detected on the first call."""
        if self.settings.gpu_backends in (0, 1):
            return ()
        if self._choice is None:
            self._choice = asyncio.create_task(asyncio.to_thread(self._detect), name="gpus")
        # shield: a request that gives up must not cancel the detection for the others.
        return await asyncio.shield(self._choice)

    def _detect(self) -> tuple[Gpu, ...]:
        settings = self.settings
        active = active_environment(settings.env.paths)
        cuda = bool(active and active.record.get("cuda_working"))
        found = nvidia_gpus(settings.env) if cuda else ()
        chosen = choose_gpus(found, cuda_working=cuda, limit=settings.gpu_backends)
        if chosen:
            log.info("one samgeo-api per GPU for jobs: %s", ", ".join(map(label_of, chosen)))
        return chosen

    async def _pin_main(self) -> None:
        gpus = await self.gpus()
        self.main.device = device_of(gpus[0]) if gpus else None

    async def for_jobs(self) -> list[tuple[Gpu, ManagedBackend]]:
        """The extra backends (GPU 1 on), created on the first job; each starts with
        its first tile. One that failed to start is given another chance by each job."""
        gpus = await self.gpus()
        async with self._creating:
            if gpus and not self.extras:
                for gpu in gpus[1:]:
                    extra = ManagedBackend(self.settings, self.http, name=f"gpu{gpu.index}")
                    extra.device = device_of(gpu)
                    await extra.startup()  # adopts or stops one a killed sidecar left
                    self.extras.append((gpu, extra))
        for _gpu, extra in self.extras:
            extra.supervisor.reset_failure()
        return self.extras

    def main_gpu(self) -> Gpu | None:
        """The main backend's GPU once chosen (status only: never waits)."""
        choice = self._choice
        if choice is None or not choice.done() or choice.cancelled() or choice.exception():
            return None
        return next(iter(choice.result()), None)

    async def after_install(self) -> None:
        """A new environment: its CUDA may differ, so the choice is made again; idle
        extra backends from the old one go (as the main one does)."""
        for _gpu, extra in self.extras:
            await extra.after_install()
        if not self.extras:
            self._choice = None

    async def aclose(self) -> None:
        """The sidecar stops: so do the extra backends."""
        if self._choice is not None and not self._choice.done():
            self._choice.cancel()
        await asyncio.gather(*(extra.aclose() for _gpu, extra in self.extras))
