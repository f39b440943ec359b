"""The latency benchmark's second baseline: the least a Starlette + httpx proxy
does (stream the upload up, stream the answer back; no token, no validation,
no logs). It is what the sidecar would cost built the obvious way; the sidecar
itself does more per request and, with its own upstream client, costs less.

Run as ``uvicorn tests.benchmarks.bare_proxy:app`` with ``BARE_PROXY_UPSTREAM``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

upstream = httpx.AsyncClient(
    base_url=os.environ.get("BARE_PROXY_UPSTREAM", "http://127.0.0.1:1"), trust_env=False,
    timeout=None,
)  # fmt: skip


async def segment(request: Request) -> Response:
    mode = request.path_params["mode"]
    sent = upstream.build_request(
        "POST",
        f"/segment/{mode}",
        headers={"content-type": request.headers["content-type"]},
        content=request.stream(),
    )
    answer = await upstream.send(sent, stream=True)

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in answer.aiter_raw():
                yield chunk
        finally:
            await answer.aclose()

    headers = {"content-type": answer.headers.get("content-type", "application/json")}
    return StreamingResponse(relay(), status_code=answer.status_code, headers=headers)


async def health(_request: Request) -> Response:
    return Response("ok")


app = Starlette(
    routes=[Route("/ml/segment/{mode}", segment, methods=["POST"]), Route("/health", health)]
)
