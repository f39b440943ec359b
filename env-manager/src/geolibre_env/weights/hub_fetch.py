"""Running :mod:`geolibre_env.weights.hub_runner` (huggingface_hub, in another Python) and
reading its JSON lines: progress events, the files it fetched, or one error that
:mod:`geolibre_env.weights.hub_errors` turns into a sentence.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from geolibre_env.errors import InstallCancelledError, WeightsError
from geolibre_env.net.trust import base_roots, combined_bundle
from geolibre_env.progress import CancelToken, ProgressEvent, ProgressSink
from geolibre_env.redact import redact
from geolibre_env.settings import EnvSettings
from geolibre_env.uv.runner import PASSTHROUGH_NAMES, stream_lines
from geolibre_env.weights.hub_errors import WeightsCancelledError, runner_error

log = logging.getLogger("geolibre_env.weights.sam3")
PROGRESS_INTERVAL_S = 0.1
# huggingface_hub's own settings a user may need to pass on (HF_HUB_DISABLE_XET: for
# networks whose TLS inspection breaks the Xet transfers).
HF_PASSTHROUGH = ("HF_HUB_DISABLE_XET", "HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_ETAG_TIMEOUT")
RUNNER = Path(__file__).with_name("hub_runner.py")


def run_hub_runner(
    settings: EnvSettings,
    items: list[dict[str, Any]],
    *,
    token: str | None,
    meter: ByteMeter,
    cancel: CancelToken | None,
    python: Path | str | Sequence[str] | None,
    repo: str,
    python_env: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Run :mod:`geolibre_env.weights.hub_runner` for ``items``; its lines become progress."""
    if not items:
        return []
    request = {"cache_dir": str(settings.paths.hf_home / "hub"), "items": items}
    outcome: dict[str, Any] = {}

    def on_line(line: str) -> None:
        try:
            data = json.loads(line)
        except ValueError:
            log.debug("hub runner: %s", redact(line))
            return
        if isinstance(data, dict):
            outcome.update(meter.read(data))

    chosen = settings.hub_python or python or sys.executable
    launcher = [str(chosen)] if isinstance(chosen, str | Path) else list(chosen)
    argv = [*launcher, str(RUNNER)]
    names = ", ".join(f"{item['repo']} ({', '.join(item['files'] or ['all'])})" for item in items)
    log.info("Fetching %s from %s with %s", names, settings.hub_endpoint, argv[0])
    try:
        env = {**(python_env or {}), **runner_environment(settings, token)}
        code, tail, _ = stream_lines(argv, env=env,
                                     on_line=on_line, cancel=cancel,
                                     stdin_text=json.dumps(request))  # fmt: skip
    except InstallCancelledError:
        raise WeightsCancelledError(
            f"The download of {meter.file or 'the SAM 3 weights'} was cancelled.",
            hint="Run it again to continue where it stopped.",
        ) from None
    if "error" in outcome:
        raise runner_error(outcome["error"], repo=repo, endpoint=settings.hub_endpoint,
                           proxies=settings.proxies, has_token=bool(token))  # fmt: skip
    if code != 0 and any("No module named 'huggingface_hub'" in line for line in tail):
        raise WeightsError(
            f"{launcher[0]} cannot fetch the SAM 3 weights: it has no huggingface_hub.",
            hint="Repair the model environment (`geolibre-ml repair`), or set "
            "GEOLIBRE_ML_HUB_PYTHON to a Python that has huggingface_hub.",
        )
    if code != 0 or "results" not in outcome:
        last = redact(" ".join(tail[-3:]))[:300]
        raise WeightsError(
            f"The weights download stopped unexpectedly (exit code {code}): {last or 'no output'}.",
            hint="Run it again: it continues from the bytes already received.",
        )
    return list(outcome["results"])


def runner_environment(settings: EnvSettings, token: str | None) -> dict[str, str]:
    """The runner's environment: the model env's Hub home, the endpoint (a mirror),
    the proxies and roots the rest of the install uses, the token; nothing else of ours."""
    env = {
        key: value
        for key, value in settings.environ.items()
        if (key in PASSTHROUGH_NAMES and not key.startswith("SSL_CERT"))
        or key in HF_PASSTHROUGH
        or key.startswith("HF_XET_")
    }
    env.update(settings.proxies.child_environment())
    env.update(HF_HOME=str(settings.paths.hf_home), HF_ENDPOINT=settings.hub_endpoint,
               HF_HUB_DISABLE_TELEMETRY="1")  # fmt: skip
    # huggingface_hub's httpx reads SSL_CERT_FILE (both 1.x and 2.x, measured): the
    # OS roots, plus GEOLIBRE_ML_CA_BUNDLE in one file as uv gets it.
    if settings.ca_bundle is not None:
        roots: Path | None = combined_bundle(settings.paths, settings.ca_bundle, settings.environ)
    else:
        roots = base_roots(settings.environ)
    if roots is not None:
        env["SSL_CERT_FILE"] = str(roots)
    if token:
        env["HF_TOKEN"] = token
    return env


class ByteMeter:
    """The hub runner's lines as byte progress over the whole fetch, at most one event per
    PROGRESS_INTERVAL_S; a file's resumed bytes count once (positions are absolute)."""

    def __init__(self, sink: ProgressSink) -> None:
        self.sink = sink
        self.total = self.base = 0  # base: bytes of the items and files already finished
        self.file, self._file_total, self._last = "", 0, 0.0
        self._item_total = self._item_done = 0  # the current item: its size, files done

    def read(self, data: dict[str, Any]) -> dict[str, Any]:
        event = data.get("event")
        if event == "plan":
            self.base += self._item_total
            self._item_total, self._item_done = int(data.get("total") or 0), 0
            self.total = self.base + self._item_total
        elif event == "start":
            self.file, self._file_total = str(data["file"]), int(data["size"])
            self._update(int(data.get("resumed") or 0), force=True)
        elif event == "progress":
            self._update(int(data.get("done") or 0))
        elif event == "file":
            self._item_done += int(data.get("size") or 0)
        elif event in ("error", "done"):
            return {event: data} if event == "error" else {"results": data.get("results", [])}
        return {}

    def _update(self, file_done: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= PROGRESS_INTERVAL_S:
            self._last = now
            extra = {"file": self.file, "file_done": file_done, "file_total": self._file_total}
            self._emit(self.file, self.base + self._item_done + file_done, extra)

    def finish(self, message: str) -> None:
        self.base += self._item_total
        self._item_total = self._item_done = 0
        self._emit(message, self.base, {})

    def _emit(self, message: str, done: int, extra: dict[str, Any]) -> None:
        event = ProgressEvent("weights", message, done, self.total, "bytes", extra=extra)
        self.sink(event)
