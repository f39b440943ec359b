"""The app factory: routes, middleware order, and the lifespan that owns the
backend clients (httpx for probes and small calls, the lean upstream client for
segment requests) and the backend (and stops it when the app stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from geolibre_env.model_env import active_environment
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from geolibre_sidecar import __version__
from geolibre_sidecar.backend import Backend, ManagedBackend, make_backend
from geolibre_sidecar.backend_start import answer_status, wait_seconds
from geolibre_sidecar.environment_info import EnvironmentInfo
from geolibre_sidecar.errors import EXCEPTION_HANDLERS, BackendUnavailable
from geolibre_sidecar.gpu_backends import GpuBackends
from geolibre_sidecar.install_api import (
    InstallJobs,
    cancel_install,
    install_events,
    install_state,
    start_install,
)
from geolibre_sidecar.jobs.api import (
    create_job,
    delete_job,
    job_events,
    job_result,
    job_state,
    list_jobs,
)
from geolibre_sidecar.jobs.manager import JobManager
from geolibre_sidecar.jobs.pool import Pool
from geolibre_sidecar.jobs.store import JobStore
from geolibre_sidecar.prewarm import prewarm
from geolibre_sidecar.proxy import SegmentProxy
from geolibre_sidecar.sam3_modes import Sam3Policy
from geolibre_sidecar.security import HostGuard, TokenAuth
from geolibre_sidecar.settings import SidecarSettings
from geolibre_sidecar.status import StatusSources, build_status
from geolibre_sidecar.upstream import UpstreamClient

log = logging.getLogger("geolibre.sidecar")

CONNECT_TIMEOUT_S = 5.0
# Idle keep-alive connections to the backend; more would only hold sockets.
MAX_KEEPALIVE = 8


def make_http_client(
    settings: SidecarSettings, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    """The sidecar's httpx client to samgeo-api (building one costs ~40 ms: reuse it)."""
    timeout = httpx.Timeout(settings.upstream_timeout_s, connect=CONNECT_TIMEOUT_S)
    return httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        limits=httpx.Limits(max_keepalive_connections=MAX_KEEPALIVE, max_connections=None),
        # Loopback only: proxies from the environment must not capture these calls.
        trust_env=False,
    )


def _model_python(settings: SidecarSettings) -> Path | None:
    """The model environment's Python, which runs the tile runner (it has rasterio)."""
    active = active_environment(settings.env.paths)
    return active.python if active is not None and active.python.exists() else None


def create_app(
    settings: SidecarSettings,
    *,
    token: str,
    transport: httpx.AsyncBaseTransport | None = None,
    request_shutdown: Callable[[], None] | None = None,
) -> Starlette:
    """Build the sidecar. ``transport`` lets tests route upstream calls; ``request_shutdown``
    is how ``POST /shutdown`` asks the server (the launcher) to exit."""

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def status(request: Request) -> Response:
        return JSONResponse(build_status(request.app.state.status_sources))

    async def models(request: Request) -> Response:
        backend: Backend = request.app.state.backend
        if not backend.available:
            raise BackendUnavailable(
                "The model backend is not running, so its models cannot be listed. "
                "Press Start server, or send a segmentation request to start it."
            )
        url = await backend.ensure_ready()
        http: httpx.AsyncClient = request.app.state.http
        try:
            upstream = await http.get(f"{url}/models", timeout=30.0)
        except httpx.TransportError as exc:
            raise await backend.explain(exc) from None
        return Response(
            upstream.content,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type", "application/json"),
        )

    async def backend_start(request: Request) -> Response:
        backend: Backend = request.app.state.backend
        await backend.start(wait_s=wait_seconds(request.query_params))
        body = build_status(request.app.state.status_sources)
        return JSONResponse(body, status_code=answer_status(backend.state))

    async def backend_stop(request: Request) -> Response:
        await request.app.state.backend.stop()
        return JSONResponse(build_status(request.app.state.status_sources))

    async def diagnostics(request: Request) -> Response:
        report = await _diagnose(request)
        return JSONResponse(report.to_dict())

    async def diagnostics_bundle(request: Request) -> Response:
        from geolibre_env.report import bundle_bytes

        report = await _diagnose(request)
        data = await asyncio.to_thread(bundle_bytes, settings.env, report)
        name = time.strftime("geolibre-ml-report-%Y%m%d-%H%M%S.zip")
        return Response(
            data,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    async def _diagnose(request: Request) -> Any:
        # Imported here: the report's modules are not needed to start the sidecar.
        from geolibre_env.report import run_diagnostics, sidecar_facts

        backend: Backend = request.app.state.backend
        facts = sidecar_facts(settings.env.environ, __version__)
        return await asyncio.to_thread(
            run_diagnostics, settings.env, live_backend=backend.snapshot(), sidecar=facts
        )

    async def shutdown(_request: Request) -> Response:
        log.info("shutdown requested over HTTP")
        if request_shutdown is not None:
            request_shutdown()
        return JSONResponse({"status": "shutting down"}, status_code=202)

    async def segment(request: Request) -> Response:
        return await request.app.state.proxy(request)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        http = make_http_client(settings, transport)
        backend = make_backend(settings, http)
        # One more managed samgeo-api per GPU for jobs, on a multi-GPU machine.
        gpus = GpuBackends(settings, http, backend) if isinstance(backend, ManagedBackend) else None
        app.state.http = http
        app.state.backend = backend
        upstream = UpstreamClient(
            connect_timeout_s=CONNECT_TIMEOUT_S, read_timeout_s=settings.upstream_timeout_s
        )
        sam3 = Sam3Policy(settings)
        app.state.proxy = SegmentProxy(settings, backend, upstream, sam3, app.state.stopping)
        facts = EnvironmentInfo(settings.env, managed=backend.mode == "managed")

        async def after_install() -> None:
            await backend.after_install()
            if gpus is not None:
                await gpus.after_install()
            await facts.refresh()

        app.state.install_jobs = jobs = InstallJobs(settings, on_success=after_install)
        app.state.status_sources = StatusSources(
            settings=settings,
            backend=backend,
            install=jobs,
            environment=facts,
            sam3=sam3,
            proxy=app.state.proxy,
        )
        app.state.job_manager = job_manager = JobManager(
            settings,
            JobStore(settings.env.paths.data / "jobs"),
            Pool(settings, backend, upstream, app.state.proxy, gpus),
            python=lambda: _model_python(settings),
        )
        app.state.status_sources.jobs = job_manager
        await backend.startup()
        await job_manager.startup()
        # Not awaited: GPU detection must not delay the ready line.
        refresh = asyncio.create_task(facts.refresh(), name="environment-facts")
        # Status lists the per-GPU backends before the first job (none starts yet).
        listing = asyncio.create_task(job_manager.pool.members_for_job(), name="gpu-backends")
        warming = (
            asyncio.create_task(prewarm(settings, backend, sam3, http), name="prewarm")
            if settings.prewarm
            else None
        )
        try:
            yield
        finally:
            refresh.cancel()
            listing.cancel()
            if warming is not None:
                warming.cancel()
            await jobs.aclose()
            await job_manager.aclose()
            await app.state.proxy.aclose()
            if gpus is not None:
                await gpus.aclose()
            await backend.aclose()
            await upstream.aclose()
            await http.aclose()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/ml/status", status, methods=["GET"]),
        Route("/ml/models", models, methods=["GET"]),
        Route("/ml/segment/{mode}", segment, methods=["POST"]),
        Route("/ml/backend/start", backend_start, methods=["POST"]),
        Route("/ml/backend/stop", backend_stop, methods=["POST"]),
        Route("/ml/backend/install", start_install, methods=["POST"]),
        Route("/ml/backend/install", install_state, methods=["GET"]),
        Route("/ml/backend/install", cancel_install, methods=["DELETE"]),
        Route("/ml/backend/install/events", install_events, methods=["GET"]),
        Route("/ml/jobs", create_job, methods=["POST"]),
        Route("/ml/jobs", list_jobs, methods=["GET"]),
        Route("/ml/jobs/{job_id}", job_state, methods=["GET"]),
        Route("/ml/jobs/{job_id}", delete_job, methods=["DELETE"]),
        Route("/ml/jobs/{job_id}/events", job_events, methods=["GET"]),
        Route("/ml/jobs/{job_id}/result", job_result, methods=["GET"]),
        Route("/ml/diagnostics", diagnostics, methods=["GET"]),
        Route("/ml/diagnostics/bundle", diagnostics_bundle, methods=["GET"]),
        Route("/shutdown", shutdown, methods=["POST"]),
    ]
    # Outermost first: refuse foreign Host headers before anything else, answer
    # CORS pre-flight before the token check, then require the token.
    middleware = [
        Middleware(HostGuard, allowed_hosts=settings.allowed_hosts),
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["X-GeoLibre-Token", "Authorization", "Content-Type", "Last-Event-ID"],
            max_age=600,
        ),
        Middleware(TokenAuth, token=token),
    ]
    handlers: dict[Any, Any] = dict(EXCEPTION_HANDLERS)
    app = Starlette(
        routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=lifespan
    )
    app.state.stopping = asyncio.Event()
    return app


def begin_shutdown(app: Starlette) -> None:
    """The server has begun to exit (signal, ``POST /shutdown``, parent gone): requests
    waiting on the backend get a 503 now, relays are cut, so the exit does not wait out
    the server's grace period and then cancel them with a traceback."""
    proxy: SegmentProxy | None = getattr(app.state, "proxy", None)
    if proxy is not None:
        proxy.begin_shutdown()
    app.state.stopping.set()
