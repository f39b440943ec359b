"""Prewarm (``GEOLIBRE_ML_PREWARM=1``): start the managed samgeo-api when the
sidecar starts and load the model the app's first text request will use, so the
first click costs what a warm one does.

samgeo-api loads SAM 3 lazily and caches it under every model setting of the
request (implementation, confidence threshold). Its ``--preload sam3:facebook/sam3``
builds a different entry (no ``backend`` field: the meta implementation), which
kills the process at start-up on a computer without CUDA and, where it works,
still leaves the first text request to load its own copy. So the warm-up is the
app's own first request in miniature: a small image, the installed
implementation, samgeo-api's default threshold.
"""

from __future__ import annotations

import logging
import struct
import time
import zlib

import httpx
from geolibre_env.errors import GeoLibreError
from geolibre_env.model_env import active_environment
from geolibre_env.spec import load_spec
from geolibre_env.weights import active_weights_status

from geolibre_sidecar.backend import Backend
from geolibre_sidecar.model_variants import variant_key
from geolibre_sidecar.sam3_modes import Sam3Policy
from geolibre_sidecar.settings import SidecarSettings

log = logging.getLogger("geolibre.prewarm")

WARMUP_PROMPT = "warm-up"
WARMUP_SIZE = 32  # pixels a side: SAM 3 resizes every image to 1008 px anyway


def warmup_png(size: int = WARMUP_SIZE) -> bytes:
    """A valid grey PNG (no imaging library in the sidecar's environment)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes(range(y, y + size)) for y in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _why_not(settings: SidecarSettings, backend: Backend, sam3: Sam3Policy) -> str | None:
    """Why there is nothing to prewarm here, or None."""
    if backend.mode != "managed" or settings.samgeo_cmd:
        return "the backend was not installed by geolibre-ml, so its model is left alone"
    active = active_environment(settings.env.paths)
    if active is None or sam3.current().default is None:
        return "the model backend is not installed"
    try:
        weights = active_weights_status(settings.env, load_spec(settings.env.spec_path), active)
    except GeoLibreError as exc:
        return f"the SAM 3 weights could not be checked ({exc})"
    if not weights.present:
        return "the SAM 3 weights are not on this computer"
    return None


async def prewarm(
    settings: SidecarSettings, backend: Backend, sam3: Sam3Policy, http: httpx.AsyncClient
) -> None:
    """Start the backend and load the default text model; log what happened.

    Never raises (but for cancellation): a failed warm-up leaves the first real
    request to load the model, and the supervisor reports a failed start as usual.
    """
    reason = _why_not(settings, backend, sam3)
    if reason is not None:
        log.info("prewarm skipped: %s", reason)
        return
    implementation = sam3.current().default or "transformers"
    fields = {"prompt": WARMUP_PROMPT, "backend": implementation}
    started = time.monotonic()
    try:
        url = await backend.ensure_ready()
        ready_s = time.monotonic() - started
        async with backend.request():
            response = await http.post(
                f"{url}/segment/text",
                files={"file": ("warm-up.png", warmup_png(), "image/png")},
                data=fields,
                timeout=settings.upstream_timeout_s,
            )
        backend.variants.loaded(backend.instance, variant_key("text", fields))
    except Exception as exc:  # start failures, transport errors: never the sidecar's end
        log.warning("prewarm failed: %s", exc)
        return
    # 404 "No objects found" is a loaded model that saw nothing in a grey square.
    if response.status_code in (200, 404):
        log.info(
            "prewarm: samgeo-api ready in %.1f s, SAM 3 (%s) loaded in %.1f s more",
            ready_s, implementation, time.monotonic() - started - ready_s,
        )  # fmt: skip
    else:
        log.warning(
            "prewarm: the warm-up request got %d; the first segmentation will load the model",
            response.status_code,
        )
