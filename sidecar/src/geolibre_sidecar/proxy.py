"""The streaming proxy for ``POST /ml/segment/{text,automatic,predict}``.

Both directions stream: the upload is forwarded chunk by chunk while the
multipart guard validates it (the last chunk is held back until the body is
known good), and the answer is relayed as it arrives. A client that goes away
cancels the upstream request; every failure becomes one status and one
sentence (see :mod:`geolibre_sidecar.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator

import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message

from geolibre_sidecar.backend import Backend
from geolibre_sidecar.errors import (
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    SidecarError,
    TooManyRequests,
    error_response,
)
from geolibre_sidecar.model_variants import variant_key
from geolibre_sidecar.multipart_guard import MultipartGuard, boundary_of, form_part
from geolibre_sidecar.relay import RelayResponse, Release
from geolibre_sidecar.sam3_modes import Sam3Here, Sam3Policy
from geolibre_sidecar.segment_fields import ENDPOINT_FIELDS
from geolibre_sidecar.settings import MIB, SidecarSettings
from geolibre_sidecar.upload_pace import UploadPace
from geolibre_sidecar.upstream import UpstreamClient, UpstreamError, UpstreamResponse

log = logging.getLogger("geolibre.proxy")

ERROR_BODY_LIMIT_BYTES = 64 * 1024


class _ClientGone(Exception):
    pass


def _shutting_down() -> BackendUnavailable:
    return BackendUnavailable(
        "The sidecar is shutting down; start it again and retry the request.",
        headers={"Connection": "close"},
    )


class SegmentProxy:
    """Forwards segment requests to the backend; owns the in-flight cap."""

    def __init__(
        self,
        settings: SidecarSettings,
        backend: Backend,
        upstream: UpstreamClient,
        sam3: Sam3Policy | None = None,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.settings = settings
        # Set when the server begins to exit: requests still waiting on the backend are
        # answered 503 at once instead of being cancelled by the server's grace timeout.
        self.stopping = stopping or asyncio.Event()
        self._relays: set[RelayResponse] = set()
        self.backend = backend
        self.upstream = upstream
        self.sam3 = sam3 or Sam3Policy(settings)
        self.in_flight = 0
        # Requests whose client left while samgeo-api computes them (it cannot cancel
        # inference): each keeps its slot until the backend answers or breaks.
        self.abandoned = 0
        self._abandoned_tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, request: Request) -> Response:
        mode = request.path_params["mode"]
        if mode not in ENDPOINT_FIELDS:
            return JSONResponse(
                {"detail": f"Unknown segmentation mode {mode!r}; use text, automatic or predict."},
                status_code=404,
            )
        if self.stopping.is_set():
            raise _shutting_down()
        here = self.sam3.current()
        if refusal := self.backend.weights_refusal(mode, None):
            raise refusal
        boundary = boundary_of(request.headers.get("content-type", ""))
        length = self._declared_length(request)
        if self.in_flight >= self.settings.max_in_flight:
            raise TooManyRequests(
                f"{self.in_flight} segmentation requests are already running (the limit is "
                f"{self.settings.max_in_flight}); wait for one to finish and try again.",
                headers={"Retry-After": "5"},
            )
        self.in_flight += 1
        release = self._releaser()
        try:
            url = await self.backend.ensure_ready()
            request_scope = self.backend.request()
            await request_scope.__aenter__()
            release = self._releaser(request_scope)
            response = await self._forward(request, mode, url, boundary, length, release, here)
        except BaseException:
            await release()
            raise
        return response

    def _declared_length(self, request: Request) -> int | None:
        raw = request.headers.get("content-length")
        if raw is None:
            return None  # chunked: counted while streaming instead
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            raise BadRequest("Content-Length is not a number.")
        if length > self.settings.max_upload_bytes:
            raise self._too_large()
        return length

    def _too_large(self) -> PayloadTooLarge:
        limit_mb = self.settings.max_upload_bytes // MIB
        return PayloadTooLarge(
            f"The upload is larger than the sidecar's limit of {limit_mb} MB. Crop or tile the "
            "image, or raise GEOLIBRE_ML_MAX_UPLOAD_MB.",
            headers={"Connection": "close"},
        )

    def _releaser(
        self, request_scope: contextlib.AbstractAsyncContextManager[None] | None = None
    ) -> Release:
        released = False

        async def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.in_flight -= 1
            if request_scope is not None:
                await request_scope.__aexit__(None, None, None)

        return release

    async def _forward(
        self,
        request: Request,
        mode: str,
        url: str,
        boundary: bytes,
        length: int | None,
        release: Release,
        here: Sam3Here,
    ) -> Response:
        started = time.monotonic()
        guard = MultipartGuard(boundary, mode, vet=here.vetter(mode))
        # A text request without `backend` gets the implementation installed for this
        # computer (samgeo-api's own default, meta, needs CUDA). Whether it lacks one is
        # known only at the end, after the head went out: so no Content-Length then.
        default_backend = here.default if mode == "text" else None
        forwarded_length = None if default_backend else length
        body_done = asyncio.Event()
        received_all = False
        sent = 0

        async def body() -> AsyncIterator[bytes]:
            # Raw ASGI messages rather than request.stream(): we must know when the
            # last one arrived, to tell "drain the rest" from "wait for nothing".
            nonlocal received_all
            pace = UploadPace(self.settings)
            while not received_all:
                message = await pace.receive(request.receive)
                if message["type"] == "http.disconnect":
                    raise _ClientGone
                received_all = not message.get("more_body", False)
                if chunk := message.get("body", b""):
                    yield chunk

        async def upload() -> AsyncIterator[bytes]:
            # Everything the guard allows goes out at once, except that the newest
            # chunk waits for the next one (whole chunks, no copies, when they are
            # large); the closing boundary waits for guard.finish().
            nonlocal sent
            held = b""
            held_at = 0  # stream offset of held[0]
            limit = self.settings.max_upload_bytes if length is None else length
            async for chunk in body():
                sent += len(chunk)
                if sent > limit:
                    raise self._too_large()
                guard.feed(chunk)
                ready = max(0, guard.forwardable - held_at)
                if ready >= len(held):
                    if held:
                        yield held
                    held_at += len(held)
                    held = chunk
                else:
                    if ready > 0:
                        yield held[:ready]
                    held, held_at = held[ready:] + chunk, held_at + ready
            summary = guard.finish()
            if refusal := here.refusal(mode, summary.fields):  # e.g. no model_version: sam3
                raise refusal
            fields = summary.fields
            if default_backend and not fields.get("backend", "").strip():
                cut = guard.closing_offset - held_at
                held = held[:cut] + form_part(boundary, "backend", default_backend) + held[cut:]
                fields = {**fields, "backend": default_backend}
                log.info("POST /ml/segment/text: no backend field; added %s", default_backend)
            if summary.ignored:
                log.info(
                    "POST /ml/segment/%s: forwarding fields samgeo-api ignores: %s",
                    mode, ", ".join(summary.ignored),
                )  # fmt: skip
            await self._before_release(mode, fields)
            body_done.set()
            if held:
                yield held

        post = self.upstream.post(
            url,
            f"/segment/{mode}",
            headers=[(b"content-type", request.headers["content-type"].encode("latin-1"))],
            body=upload(),
            content_length=forwarded_length,
        )
        send = asyncio.create_task(post)
        watcher = asyncio.create_task(self._client_left(request, body_done))
        stopping = asyncio.create_task(self.stopping.wait())
        try:
            async with asyncio.timeout(self.settings.upstream_timeout_s):
                await asyncio.wait({send, watcher, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            send.cancel()
            watcher.cancel()
            raise BackendTimeout(
                f"The model backend did not answer within {self.settings.upstream_timeout_s:g} s. "
                "Try a smaller image, or raise GEOLIBRE_ML_UPSTREAM_TIMEOUT_S."
            ) from None
        finally:
            stopping.cancel()
        if self.stopping.is_set() and not send.done():
            send.cancel()
            watcher.cancel()
            await asyncio.gather(send, watcher, return_exceptions=True)
            log.info("POST /ml/segment/%s: answered 503, the sidecar is shutting down", mode)
            await release()
            return error_response(_shutting_down())
        if not send.done():  # the client left while the backend was working
            self._abandon(send, release, mode, started)
            return Response(status_code=499)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        try:
            upstream = send.result()
        except _ClientGone:
            log.info("POST /ml/segment/%s: client disconnected during upload", mode)
            await release()
            return Response(status_code=499)
        except SidecarError as exc:
            # Refused before the backend saw a complete request; finish reading
            # the upload so the client gets this answer instead of a reset.
            if not isinstance(exc, PayloadTooLarge | RequestTimeout) and not received_all:
                await self._drain(request, sent)
            log.info("POST /ml/segment/%s refused: %s", mode, exc.detail)
            await release()
            return error_response(exc)
        except UpstreamError as exc:
            raise await self.backend.explain(exc) from None

        if upstream.status_code >= 500:
            return await self._error_answer(upstream, mode, release)

        def relayed(down: int) -> None:
            log.info(
                "POST /ml/segment/%s -> %d in %.2f s (%d bytes up, %d down)",
                mode, upstream.status_code, time.monotonic() - started, sent, down,
            )  # fmt: skip

        relay = RelayResponse(upstream, release, on_done=relayed)
        self._relays.add(relay)
        relay.on_end(self._relays.discard)
        return relay

    async def _before_release(self, mode: str, fields: dict[str, str]) -> None:
        """Last moment before the backend can act on the request: refuse what could only
        fail on missing weights, then apply the model-cache policy."""
        if refusal := self.backend.weights_refusal(mode, fields):
            raise refusal
        variants, owner = self.backend.variants, self.backend.instance
        key = variant_key(mode, fields)
        if variants.needs_clear(owner, key):
            log.info("clearing samgeo-api's model cache before loading variant %s", key)
            try:
                await self.backend.clear_models()
                variants.cleared()
            except httpx.HTTPError as exc:
                log.warning("could not clear the model cache: %s", exc.__class__.__name__)
        variants.loaded(owner, key)

    def _abandon(
        self, send: asyncio.Task[UpstreamResponse], release: Release, mode: str, started: float
    ) -> None:
        """The client left after the backend got the whole request: hold the slot until
        the backend answers (its work is done then), breaks, or the time limit passes."""
        log.info("POST /ml/segment/%s: client disconnected; its slot waits for the backend", mode)
        self.abandoned += 1
        remaining = self.settings.upstream_timeout_s - (time.monotonic() - started)

        async def finish() -> None:
            try:
                async with asyncio.timeout(max(remaining, 0.0)):
                    upstream = await send
                await upstream.aclose()
            except BaseException:  # any end (cancel included) frees the slot; nobody waits
                send.cancel()
            finally:
                self.abandoned -= 1
                await release()

        task = asyncio.create_task(finish(), name=f"abandoned-{mode}")
        self._abandoned_tasks.add(task)
        task.add_done_callback(self._abandoned_tasks.discard)

    def begin_shutdown(self) -> None:
        """The server is exiting: answer requests waiting on the backend with a 503 now,
        and end answers being relayed (their connection closes; the client sees a cut)."""
        self.stopping.set()
        for relay in list(self._relays):
            relay.abort()

    async def aclose(self) -> None:
        """Stop waiting for abandoned requests (the sidecar is stopping)."""
        for task in list(self._abandoned_tasks):
            task.cancel()
        await asyncio.gather(*self._abandoned_tasks, return_exceptions=True)

    async def _client_left(self, request: Request, body_done: asyncio.Event) -> None:
        """Return when the client disconnects after sending its whole body."""
        await body_done.wait()
        while True:
            message: Message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    async def _drain(self, request: Request, already: int) -> None:
        received = already
        with contextlib.suppress(ClientDisconnect, RuntimeError):
            while received <= self.settings.max_upload_bytes:
                message = await request.receive()
                if message["type"] != "http.request":
                    return
                received += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return

    async def _error_answer(
        self, upstream: UpstreamResponse, mode: str, release: Release
    ) -> Response:
        """samgeo-api's 5xx as a sentence with a cause and a hint (its raw text, often a
        library's exception, goes to the log: see Backend.note_error_answer)."""
        try:
            body = await upstream.aread(ERROR_BODY_LIMIT_BYTES)
        except UpstreamError:
            body = b""
        finally:
            await upstream.aclose()
            await release()
        detail = body.decode("utf-8", "replace").strip()
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            if isinstance(parsed, dict) and "detail" in parsed:
                detail = str(parsed["detail"])
        explained = self.backend.note_error_answer(upstream.status_code, detail)
        payload = {
            "detail": explained.detail,
            "cause": explained.cause.value,
            "hint": explained.hint,
        }
        log.warning("POST /ml/segment/%s -> %d: %s", mode, upstream.status_code, explained.detail)
        return JSONResponse(payload, status_code=upstream.status_code)
