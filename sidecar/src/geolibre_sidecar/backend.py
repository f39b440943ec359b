"""The two ways the sidecar has a backend: one it launches and supervises
(``managed``), or one it is pointed at with GEOLIBRE_ML_SAMGEO_URL (``external``,
never launched). Both answer the same questions for the proxy and status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import httpx
from geolibre_env.backend import (
    BackendState,
    ExitCause,
    Explanation,
    Health,
    LaunchSpec,
    Supervisor,
    explain_answer,
    pin_to_gpu,
    resolve_launch,
)
from geolibre_env.errors import GeoLibreError
from geolibre_env.redact import redact, redact_url
from geolibre_env.weights import (
    NOT_CHECKED_URL,
    WeightsVerdict,
)

from geolibre_sidecar.errors import BackendBroke, BackendUnavailable, Conflict, SidecarError
from geolibre_sidecar.model_variants import ModelVariants
from geolibre_sidecar.settings import SidecarSettings
from geolibre_sidecar.upstream import ConnectFailed, UpstreamError
from geolibre_sidecar.weights_gate import WeightsGate

log = logging.getLogger("geolibre.sidecar")

EXTERNAL_PROBE_INTERVAL_S = 5.0
EXTERNAL_PROBE_TIMEOUT_S = 3.0
# Variables of ours that the model server has no business seeing.


class Backend(Protocol):
    mode: str
    variants: ModelVariants
    last_request_error: dict[str, Any] | None

    @property
    def state(self) -> str: ...
    @property
    def available(self) -> bool: ...
    @property
    def health(self) -> Health: ...
    @property
    def instance(self) -> object: ...
    @property
    def public_url(self) -> str | None: ...

    async def ensure_ready(self) -> str: ...
    def request(self) -> contextlib.AbstractAsyncContextManager[None]: ...
    async def start(self, *, wait_s: float = 0.0) -> None: ...
    async def stop(self) -> None: ...
    async def clear_models(self) -> None: ...
    async def explain(self, exc: httpx.TransportError | UpstreamError) -> SidecarError: ...
    def note_error_answer(self, status: int, detail: str) -> Explanation: ...
    def weights(self) -> WeightsVerdict | None: ...
    def weights_note(self) -> str | None: ...
    def weights_refusal(
        self, mode: str, fields: Mapping[str, str] | None
    ) -> SidecarError | None: ...
    def snapshot(self) -> dict[str, Any]: ...
    async def startup(self) -> None: ...
    async def after_install(self) -> None: ...
    async def aclose(self) -> None: ...


def _reason(exc: httpx.TransportError | UpstreamError) -> str:
    """Our client's errors read as a phrase; httpx's are named by their class."""
    return str(exc) if isinstance(exc, UpstreamError) else exc.__class__.__name__


def _note_error(backend: Backend, status: int, detail: str) -> Explanation:
    """Remember samgeo-api's error answer as a sentence; its raw text goes to the log."""
    explained = explain_answer(status, detail)
    log.warning("samgeo-api answered %d: %s", status, redact(detail)[:2000])
    backend.last_request_error = {
        "status": status,
        "detail": explained.detail,
        "cause": explained.cause.value,
        "at": time.time(),
    }
    return explained


class ManagedBackend:
    """A samgeo-api the sidecar starts on demand and supervises."""

    mode = "managed"

    def __init__(self, settings: SidecarSettings, http: httpx.AsyncClient, name: str = "") -> None:
        """``name`` sets apart an extra backend (one per GPU, :mod:`.gpu_backends`)."""
        self.settings = settings
        self.supervisor = Supervisor(
            self._resolve_launch,
            paths=settings.env.paths,
            http=http,
            config=settings.supervisor,
            name=name,
        )
        # The GPU it is pinned to (CUDA_VISIBLE_DEVICES), and what a start waits for
        # first so the choice is made before a launch (both set by .gpu_backends).
        self.device: str | None = None
        self.before_start: Callable[[], Awaitable[None]] | None = None
        self.variants = ModelVariants(settings.max_model_variants)
        self.last_request_error: dict[str, Any] | None = None
        self.gate = WeightsGate(settings)

    def _resolve_launch(self) -> LaunchSpec:
        launch = resolve_launch(self.settings.env, samgeo_cmd=self.settings.samgeo_cmd)
        return pin_to_gpu(launch, self.device)

    @property
    def state(self) -> str:
        return self.supervisor.state.value

    @property
    def available(self) -> bool:
        return self.supervisor.state in (BackendState.READY, BackendState.BUSY)

    @property
    def health(self) -> Health:
        return self.supervisor.health

    @property
    def instance(self) -> object:
        snapshot_pid = self.supervisor.snapshot().get("pid")
        return (snapshot_pid, self.supervisor.url)

    @property
    def public_url(self) -> str | None:
        return self.supervisor.url if self.available else None

    async def ensure_ready(self) -> str:
        if self.before_start is not None:
            await self.before_start()
        try:
            return await self.supervisor.ensure_ready()
        except GeoLibreError as exc:
            raise BackendUnavailable(str(exc)) from None

    def request(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.supervisor.request()

    async def start(self, *, wait_s: float = 0.0) -> None:
        """Begin a start and answer at once (the state says ``starting``), or wait up to
        ``wait_s`` for it to be ready; a start that fails while waited for is an error."""
        if self.before_start is not None:
            await self.before_start()
        try:
            task = self.supervisor.begin_start()
        except GeoLibreError as exc:
            raise BackendUnavailable(str(exc)) from None
        if task is None or wait_s <= 0:
            return
        try:
            # shield: a waiter that gives up must not cancel the start for everyone.
            await asyncio.wait_for(asyncio.shield(task), wait_s)
        except TimeoutError:
            return  # still starting: the status says so
        except asyncio.CancelledError:
            if not task.cancelled():  # our request was cancelled, not the start (a stop)
                raise
        except GeoLibreError as exc:
            raise BackendUnavailable(str(exc)) from None

    async def stop(self) -> None:
        await self.supervisor.stop()

    async def clear_models(self) -> None:
        await self.supervisor.clear_models()

    async def explain(self, exc: httpx.TransportError | UpstreamError) -> SidecarError:
        report = await self.supervisor.crash_report()
        if report is not None and report.cause is not ExitCause.STOPPED:
            return BackendBroke(
                "The model backend crashed while working on this request: "
                f"{report.summary} {report.hint}"
            )
        if report is not None:
            return BackendUnavailable(
                "The model backend was stopped while working on this request."
            )
        return BackendBroke(
            "The model backend dropped the connection in the middle of this request "
            f"({_reason(exc)}). Try again; if it keeps happening, run geolibre-ml doctor."
        )

    def note_error_answer(self, status: int, detail: str) -> Explanation:
        return _note_error(self, status, detail)

    def weights(self) -> WeightsVerdict | None:
        return self.gate.verdict()

    def weights_note(self) -> str | None:
        return self.gate.note()

    def weights_refusal(self, mode: str, fields: Mapping[str, str] | None) -> SidecarError | None:
        return self.gate.refusal(mode, fields)

    def snapshot(self) -> dict[str, Any]:
        data = self.supervisor.snapshot()
        data["model_variants"] = self.variants.snapshot()
        data["device"] = self.device
        return data

    async def after_install(self) -> None:
        """A new environment was switched in: forget old failures, and let an idle
        backend from the old environment go so the next request starts the new one."""
        self.supervisor.reset_failure()
        self.last_request_error = None
        self.gate.forget()
        if self.supervisor.state is BackendState.READY and self.supervisor.in_flight == 0:
            await self.supervisor.stop(
                summary="samgeo-api was stopped to switch to the new install."
            )

    async def startup(self) -> None:
        outcome = await self.supervisor.recover_leftover()
        if outcome:
            log.info("leftover backend: %s", outcome)

    async def aclose(self) -> None:
        await self.supervisor.aclose()


class ExternalBackend:
    """A samgeo-api someone else runs: proxied, probed, never started or stopped."""

    mode = "external"

    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        self.url = url
        self.shown_url = redact_url(url)
        self._http = http
        self.health = Health()
        self.variants = ModelVariants(0)
        self.last_request_error: dict[str, Any] | None = None
        self._in_flight = 0
        self._probe_task: asyncio.Task[None] | None = None
        self._first_probe = asyncio.Event()

    @property
    def state(self) -> str:
        return BackendState.EXTERNAL.value

    @property
    def available(self) -> bool:
        # A slow /health while our own request runs is inference, not an outage.
        return self.health.last_ok_at is not None and (
            self.health.last_error is None or self._in_flight > 0
        )

    @property
    def instance(self) -> object:
        return self.url

    @property
    def public_url(self) -> str | None:
        return self.shown_url

    async def ensure_ready(self) -> str:
        return self.url

    @contextlib.asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    async def start(self, *, wait_s: float = 0.0) -> None:
        # Nothing to start: one short probe says whether it answers.
        if not await self._probe():
            raise BackendUnavailable(self._unreachable(self.health.last_error or "no answer"))

    async def stop(self) -> None:
        raise Conflict(
            "The backend is external (GEOLIBRE_ML_SAMGEO_URL), so the sidecar does not stop it."
        )

    async def clear_models(self) -> None:  # never on a server others may share
        return None

    def _unreachable(self, reason: str) -> str:
        return (
            f"The samgeo-api at {self.shown_url} is not reachable ({reason}). Start it, or unset "
            "GEOLIBRE_ML_SAMGEO_URL so the sidecar starts its own."
        )

    async def explain(self, exc: httpx.TransportError | UpstreamError) -> SidecarError:
        if isinstance(exc, ConnectFailed):
            return BackendUnavailable(self._unreachable(str(exc)))
        if isinstance(exc, httpx.ConnectError):
            return BackendUnavailable(self._unreachable("connection refused or host unknown"))
        return BackendBroke(
            f"The samgeo-api at {self.shown_url} dropped the connection in the middle of this "
            f"request ({_reason(exc)})."
        )

    def note_error_answer(self, status: int, detail: str) -> Explanation:
        return _note_error(self, status, detail)

    def weights(self) -> WeightsVerdict | None:
        return None  # that server's disk is not ours to look at

    def weights_note(self) -> str | None:
        return NOT_CHECKED_URL

    def weights_refusal(self, mode: str, fields: Mapping[str, str] | None) -> SidecarError | None:
        return None

    async def _probe(self) -> bool:
        try:
            response = await self._http.get(f"{self.url}/health", timeout=EXTERNAL_PROBE_TIMEOUT_S)
            response.raise_for_status()
            self.health.version = response.json().get("version")
        except (httpx.HTTPError, ValueError) as exc:
            self.health.last_error = exc.__class__.__name__
            return False
        finally:
            self._first_probe.set()
        self.health.last_ok_at = time.time()
        self.health.last_error = None
        if self.health.models is None:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                models = await self._http.get(
                    f"{self.url}/models", timeout=EXTERNAL_PROBE_TIMEOUT_S
                )
                if models.status_code == 200:
                    self.health.models = models.json()
        return True

    async def _probe_forever(self) -> None:
        while True:
            if not self._in_flight:  # busy: a slow answer would prove nothing
                await self._probe()
            await asyncio.sleep(EXTERNAL_PROBE_INTERVAL_S)

    async def wait_first_probe(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_probe.wait(), timeout_s)

    def snapshot(self) -> dict[str, Any]:
        return {
            "mode": "external",
            "state": self.state,
            "cause": "GEOLIBRE_ML_SAMGEO_URL is set: proxy only, never launched",
            "url": self.shown_url,
            "pid": None,
            "port": None,
            "uptime_s": None,
            "restarts": 0,
            "in_flight": self._in_flight,
            "last_exit": None,
            "health": {
                "last_ok_at": self.health.last_ok_at,
                "last_error": self.health.last_error,
            },
        }

    async def after_install(self) -> None:
        return None

    async def startup(self) -> None:
        self._probe_task = asyncio.create_task(self._probe_forever(), name="external-probe")

    async def aclose(self) -> None:
        if self._probe_task:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task


def make_backend(settings: SidecarSettings, http: httpx.AsyncClient) -> Backend:
    if settings.samgeo_url:
        return ExternalBackend(settings.samgeo_url, http)
    return ManagedBackend(settings, http)
