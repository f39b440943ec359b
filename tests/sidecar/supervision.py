"""What the sidecar supervision tests share: the fast-restarting stand-in settings,
a segment request, and the check that a stopped sidecar leaves nothing behind."""

from __future__ import annotations

import shlex
import sys

import httpx

from tests.harness.processes import assert_nothing_left as assert_leftovers_gone
from tests.standin.harness import STANDIN_SCRIPT, make_png

PNG = make_png(32, 32)
STANDIN_CMD = f"{shlex.quote(sys.executable)} {shlex.quote(str(STANDIN_SCRIPT))}"
FAST = {
    "GEOLIBRE_ML_SAMGEO_CMD": STANDIN_CMD,
    "GEOLIBRE_ML_RESTART_BACKOFF_S": "0.1",
    "GEOLIBRE_ML_STOP_TIMEOUT_S": "3",
}


def segment(client: httpx.Client, prompt: str = "trees", **fields: str) -> httpx.Response:
    return client.post(
        "/ml/segment/text",
        files={"file": ("a.png", PNG, "image/png")},
        data={"prompt": prompt, **fields},
    )


def backend_pids(sidecar) -> list[int]:
    return sidecar.descendants()


def assert_nothing_left(sidecar, marker: str) -> None:
    """Stop the sidecar; nothing it started may survive it."""
    sidecar.terminate()
    assert_leftovers_gone(marker, timeout_s=10)
