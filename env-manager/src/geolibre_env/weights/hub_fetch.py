"""Running :mod:`geolibre_env.weights.hub_runner` (huggingface_hub, in another Python) and
reading its JSON lines: progress events, the files it fetched, or one error, already
in words, that becomes an exception (:mod:`geolibre_env.weights.hub_errors`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from geolibre_env.errors import InstallCancelledError, WeightsError
from geolibre_env.net.http_client import proxy_auth_reason
from geolibre_env.net.trust import base_roots, combined_bundle
from geolibre_env.progress import CancelToken, ProgressEvent, ProgressSink
from geolibre_env.proxies import has_credentials, proxy_netloc
from geolibre_env.redact import redact
from geolibre_env.settings import EnvSettings
from geolibre_env.uv.runner import PASSTHROUGH_NAMES, stream_lines
from geolibre_env.weights.hub_cache import RepoFiles, record_fetched
from geolibre_env.weights.hub_errors import WeightsCancelledError, runner_error

log = logging.getLogger("geolibre_env.weights.sam3")
# huggingface_hub's own settings a user may need to pass on (HF_HUB_DISABLE_XET: for
# networks whose TLS inspection breaks the Xet transfers).
HF_PASSTHROUGH = ("HF_HUB_DISABLE_XET", "HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_ETAG_TIMEOUT")
RUNNER = Path(__file__).with_name("hub_runner.py")
FILE_KEYS = ("file", "file_done", "file_total")


def weights_event(message: str, done: int, total: int, **extra: Any) -> ProgressEvent:
    """A byte-progress event of the weights phase."""
    return ProgressEvent("weights", message, done, total, "bytes", extra=extra)


def run_hub_runner(
    settings: EnvSettings,
    wants: Sequence[RepoFiles],
    extra: Sequence[dict[str, Any]],
    *,
    done: str,
    token: str | None,
    progress: ProgressSink,
    cancel: CancelToken | None,
    python: Path | str | Sequence[str] | None,
    python_env: Mapping[str, str] | None = None,
) -> None:
    """Fetch ``wants`` (and ``extra`` runner items) with :mod:`geolibre_env.weights.hub_runner`
    and record what each needed; its lines become progress events over the whole fetch
    (resumed bytes count once), then one ``done`` event."""
    items = [want.runner_item() for want in wants] + list(extra)
    if not items:
        progress(weights_event(done, 0, 0))
        return
    endpoint, proxies = settings.hub_endpoint, settings.proxies
    proxy = proxies.for_url(endpoint)  # for the runner's sentences about it
    request = {"cache_dir": str(settings.paths.hf_home / "hub"), "items": items, "proxy": {
        "netloc": proxy_netloc(proxy), "setting": proxies.setting_for(endpoint),
        "auth_reason": proxy_auth_reason(proxy_netloc(proxy), has_credentials(proxy))}}  # fmt: skip
    seen: dict[str, Any] = {"total": 0, "file": ""}

    def on_line(line: str) -> None:
        try:
            data = json.loads(line)
        except ValueError:
            log.debug("hub runner: %s", redact(line))
            return
        event = data.get("event") if isinstance(data, dict) else None
        if event == "plan":
            seen["total"] = int(data["total"])
        elif event == "progress":
            seen["file"], extra = str(data["file"]), {key: data[key] for key in FILE_KEYS}
            progress(weights_event(seen["file"], int(data["done"]), seen["total"], **extra))
        elif event in ("error", "done"):
            seen[event] = data

    chosen = settings.hub_python or python or sys.executable
    launcher = [str(chosen)] if isinstance(chosen, str | Path) else list(chosen)
    names = ", ".join(f"{item['repo']} ({', '.join(item['files'] or ['all'])})" for item in items)
    log.info("Fetching %s from %s with %s", names, settings.hub_endpoint, launcher[0])
    try:
        env = {**(python_env or {}), **runner_environment(settings, token)}
        code, tail, _ = stream_lines([*launcher, str(RUNNER)], env=env, on_line=on_line,
                                     cancel=cancel, stdin_text=json.dumps(request))  # fmt: skip
    except InstallCancelledError:
        raise WeightsCancelledError(
            f"The download of {seen['file'] or 'the SAM 3 weights'} was cancelled.",
            hint="Run it again to continue where it stopped.",
        ) from None
    if "error" in seen:
        raise runner_error(seen["error"])
    if code != 0 and any("No module named 'huggingface_hub'" in line for line in tail):
        raise WeightsError(
            f"{launcher[0]} cannot fetch the SAM 3 weights: it has no huggingface_hub.",
            hint="Repair the model environment (`geolibre-ml repair`), or set "
            "GEOLIBRE_ML_HUB_PYTHON to a Python that has huggingface_hub.",
        )
    if code != 0 or "done" not in seen:
        last = redact(" ".join(tail[-3:]))[:300]
        raise WeightsError(
            f"The weights download stopped unexpectedly (exit code {code}): {last or 'no output'}.",
            hint="Run it again: it continues from the bytes already received.",
        )
    for want, got in zip(wants, seen["done"]["results"], strict=False):
        record_fetched(settings.paths.hf_home, want.key, want.repo, got["commit"], got["files"])
    progress(weights_event(done, seen["total"], seen["total"]))


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
