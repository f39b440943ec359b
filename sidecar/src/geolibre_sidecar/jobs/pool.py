"""The backends a job's tiles go to: the sidecar's own samgeo-api (through the same
in-flight cap as interactive requests, so neither starves the other), one more per
NVIDIA GPU on a multi-GPU machine (:mod:`geolibre_sidecar.gpu_backends`) and the extra
servers of ``GEOLIBRE_ML_JOB_BACKENDS``. Each gets as many tiles at once as its
concurrency (samgeo-api computes one request at a time: 1 unless the URL is a
load-balanced service of several replicas, given as ``url#N``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from geolibre_sidecar.backend import Backend
from geolibre_sidecar.errors import SidecarError
from geolibre_sidecar.gpu_backends import GpuBackends, label_of
from geolibre_sidecar.settings import SidecarSettings
from geolibre_sidecar.upstream import UpstreamClient, UpstreamError

MAX_ANSWER_BYTES = 512 * 1024 * 1024
SLOT_POLL_S = 0.1
NO_OBJECTS = "No objects found"
EMPTY: dict[str, Any] = {"type": "FeatureCollection", "features": []}


class TileFailed(Exception):
    """This backend could not segment the tile; another may (crash, 5xx, timeout)."""


class TileRefused(Exception):
    """samgeo-api refused the request itself (4xx): every tile would be refused."""


@dataclass
class Member:
    """One backend of the pool and how it has fared."""

    name: str  # shown to users: never carries credentials
    url: str | None  # None: one the sidecar runs (``backend``)
    concurrency: int
    backend: Backend | None = None
    device: str | None = None  # the GPU a managed backend is pinned to
    tiles_done: int = 0
    failures_in_row: int = 0
    last_error: str | None = None
    # Failed too often in the current job: it gets no more of its tiles (the next job
    # tries it again, as the backend may have recovered).
    set_aside: bool = False

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "device": self.device,
            "state": self.backend.state if self.backend is not None else None,
            "tiles_done": self.tiles_done,
            "failures_in_row": self.failures_in_row,
            "last_error": self.last_error,
            "set_aside": self.set_aside,
        }


def shown_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


def multipart(fields: dict[str, str], tile: bytes, filename: str) -> tuple[bytes, bytes]:
    """The form for one tile, and its content type."""
    boundary = secrets.token_hex(16).encode()
    out = bytearray()
    for name, value in fields.items():
        out += b"--" + boundary + b"\r\n"
        out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    out += b"--" + boundary + b"\r\n"
    out += f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'.encode()
    out += b"Content-Type: image/tiff\r\n\r\n" + tile + b"\r\n--" + boundary + b"--\r\n"
    return bytes(out), b"multipart/form-data; boundary=" + boundary


class Pool:
    """Sends tiles to backends; the manager decides which tile goes where."""

    def __init__(
        self,
        settings: SidecarSettings,
        backend: Backend,
        upstream: UpstreamClient,
        proxy: Any,
        gpus: GpuBackends | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.upstream = upstream
        self.proxy = proxy  # its in_flight count is the cap jobs share with requests
        self.gpus = gpus
        self.members = [Member("local", None, 1, backend)] + [
            Member(shown_url(url), url, concurrency) for url, concurrency in settings.job_backends
        ]

    def snapshot(self) -> list[dict[str, Any]]:
        return [member.snapshot() for member in self.members]

    async def members_for_job(self) -> list[Member]:
        """Every member, with one per GPU on a multi-GPU machine (listed at start-up)."""
        if self.gpus is None:
            return list(self.members)
        created = await self.gpus.for_jobs()
        known = {member.backend for member in self.members}  # after the wait: no twice
        extras = [(gpu, extra) for gpu, extra in created if extra not in known]
        main_gpu = self.gpus.main_gpu()
        self.members[0].device = label_of(main_gpu) if main_gpu else None
        for position, (gpu, extra) in enumerate(extras, start=1):
            member = Member(f"gpu{gpu.index}", None, 1, extra, label_of(gpu))
            self.members.insert(position, member)
        return list(self.members)

    async def segment(
        self, member: Member, mode: str, fields: dict[str, str], tile: bytes, name: str
    ) -> dict[str, Any]:
        """samgeo-api's GeoJSON for one tile (an empty collection when it found nothing)."""
        body, content_type = multipart(fields, tile, name)
        backend = member.backend
        if backend is None:
            assert member.url is not None
            return await self._post(member.url, mode, body, content_type)
        # Only the main backend serves interactive requests: only it shares their cap.
        shared = backend is self.backend
        async with self._local_slot() if shared else contextlib.nullcontext():
            try:
                url = await backend.ensure_ready()
            except SidecarError as exc:
                raise TileFailed(exc.detail) from None
            async with backend.request():
                return await self._post(url, mode, body, content_type, backend=backend)

    @contextlib.asynccontextmanager
    async def _local_slot(self) -> AsyncIterator[None]:
        # Interactive requests get a 429 at the cap; a tile waits for a free slot.
        while self.proxy.in_flight >= self.settings.max_in_flight:
            await asyncio.sleep(SLOT_POLL_S)
        self.proxy.in_flight += 1
        try:
            yield
        finally:
            self.proxy.in_flight -= 1

    async def _post(
        self,
        url: str,
        mode: str,
        body: bytes,
        content_type: bytes,
        *,
        backend: Backend | None = None,
    ) -> dict[str, Any]:
        """One tile to one server; ``backend``: one the sidecar runs, which explains."""

        async def once() -> AsyncIterator[bytes]:
            yield body

        try:
            async with asyncio.timeout(self.settings.upstream_timeout_s):
                answer = await self.upstream.post(
                    url,
                    f"/segment/{mode}",
                    headers=[(b"content-type", content_type)],
                    body=once(),
                    content_length=len(body),
                )
                try:
                    data = await answer.aread(MAX_ANSWER_BYTES)
                finally:
                    await answer.aclose()
        except TimeoutError:
            raise TileFailed(f"no answer within {self.settings.upstream_timeout_s:g} s") from None
        except UpstreamError as exc:
            if backend is not None:
                raise TileFailed((await backend.explain(exc)).detail) from None
            raise TileFailed(str(exc)) from None
        text = data.decode("utf-8", "replace")
        detail = text
        with contextlib.suppress(ValueError):
            parsed = json.loads(data)
            if isinstance(parsed, dict) and "detail" in parsed:
                detail = str(parsed["detail"])
        status = answer.status_code
        if status == 200:
            try:
                result = json.loads(data)
            except ValueError:
                raise TileFailed("the backend's answer was not JSON") from None
            if not isinstance(result, dict):
                raise TileFailed("the backend's answer was not a GeoJSON object")
            return result
        if status == 404 and NO_OBJECTS in detail:
            return EMPTY
        if status >= 500 or status in (408, 429):
            if backend is not None:
                detail = backend.note_error_answer(status, detail).detail
            raise TileFailed(f"HTTP {status}: {detail[:300]}")
        if status in (401, 403):
            raise TileFailed(f"HTTP {status}: the backend refused our credentials")
        raise TileRefused(f"samgeo-api refused the request ({status}): {detail[:300]}")
