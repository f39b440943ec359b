"""How long an upload may take: a slow client must not hold an in-flight slot.

Two rules, as production servers set them: no gap longer than the idle timeout
between two pieces of the body (nginx's client_body_timeout), and after that
same grace period an average pace of at least ``min_bytes_per_s`` (Apache's
mod_reqtimeout MinRate). A loopback upload of gigabytes passes both with room
to spare; one byte a second fails within the grace period.
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import Message, Receive

from geolibre_sidecar.errors import RequestTimeout
from geolibre_sidecar.settings import SidecarSettings


class UploadPace:
    """Wraps ``receive`` for one request body; raises RequestTimeout when too slow."""

    def __init__(self, settings: SidecarSettings) -> None:
        self.idle_s = settings.body_idle_timeout_s
        self.min_rate = settings.min_upload_bytes_per_s
        self.started = time.monotonic()
        self.received = 0

    def allowed_s(self) -> float:
        """Seconds the next piece of the body may take to arrive."""
        paced_until = self.started + self.idle_s + self.received / self.min_rate
        return max(0.0, min(self.idle_s, paced_until - time.monotonic()))

    async def receive(self, receive: Receive) -> Message:
        try:
            async with asyncio.timeout(self.allowed_s()):
                message = await receive()
        except TimeoutError:
            raise RequestTimeout(
                f"The upload was too slow: no data for {self.idle_s:g} s, or under "
                f"{self.min_rate // 1024} KiB/s on average. Send the file in one go.",
                headers={"Connection": "close"},
            ) from None
        self.received += len(message.get("body", b""))
        return message
