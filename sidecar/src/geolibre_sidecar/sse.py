"""Server-sent events shared by the install and the tiled jobs: replay what a client
missed (``Last-Event-ID``), then follow live events until the work ends."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import StreamingResponse

SSE_HEARTBEAT_S = 15.0
# Events kept in memory per source; the first ones and the latest are what matter.
MAX_EVENTS = 2000


class EventSource(Protocol):
    """Something with numbered events (``id`` from 1) that can say it is done."""

    events: list[dict[str, Any]]
    changed: asyncio.Condition

    @property
    def running(self) -> bool: ...


async def notify(source: EventSource) -> None:
    async with source.changed:
        source.changed.notify_all()


async def follow(source: EventSource, after: int = 0) -> AsyncIterator[dict[str, Any]]:
    """Events after ``after``, then live ones until ``source`` stops running."""
    # By id, not by position: a long list drops middle events.
    sent = max(after, 0)
    while True:
        pending = [e for e in source.events[-MAX_EVENTS:] if e["id"] > sent]
        for event in pending:
            sent = event["id"]
            yield event
        if not source.running and not any(e["id"] > sent for e in source.events[-1:]):
            return
        async with source.changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(source.changed.wait(), SSE_HEARTBEAT_S)
        if source.running and not any(e["id"] > sent for e in source.events[-1:]):
            yield {"event": "heartbeat"}


def frame(event: dict[str, Any]) -> bytes:
    """One event as SSE bytes (a heartbeat is a comment)."""
    if event.get("event") == "heartbeat":
        return b": keep-alive\n\n"
    kind = event.get("event", "progress")
    ident = event.get("id", "")
    data = json.dumps(event, separators=(",", ":"), default=str)
    return f"id: {ident}\nevent: {kind}\ndata: {data}\n\n".encode()


def last_event_id(request: Request) -> int:
    raw = request.headers.get("last-event-id", "").strip()
    # Event ids are positive; anything else (negative, huge, garbage) replays from the start.
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else 0


def event_stream(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def stream() -> AsyncIterator[bytes]:
        async for event in events:
            yield frame(event)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
