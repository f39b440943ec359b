"""Do the plan's sources answer? One short request to each, all at once, through the
proxy and trust settings the install itself uses, before anything is downloaded.

An answer is any HTTP response (a 404 or 401 still proves the host is reachable);
a failure is a name that does not resolve, a refused or timed-out connection, a
certificate this computer does not trust, or a proxy that refuses. The whole
check takes at most about :data:`CHECK_TIMEOUT_S`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from geolibre_env.net.http_client import make_client, transport_failure
from geolibre_env.proxies import has_credentials, proxy_netloc
from geolibre_env.redact import redact_url
from geolibre_env.settings import EnvSettings

__all__ = ["CHECK_TIMEOUT_S", "SourceAnswer", "check_sources"]

# A working index answers in well under a second; two leaves room for a slow
# proxy without making every `install --dry-run` feel slow.
CHECK_TIMEOUT_S = 2.0
ROLE_LABELS = {
    "packages": "package index",
    "torch": "torch source",
    "torch-fallback": "torch fallback",
    "weights": "weights (Hub)",
}


@dataclass(frozen=True)
class SourceAnswer:
    """What one source did when asked; ``url`` is the page asked for, without credentials."""

    role: str  # "packages", "torch", "torch-fallback", "weights"
    url: str
    host: str
    answered: bool
    status: int | None = None  # the HTTP status, when it answered
    failure: str | None = None  # why not, in words (no credentials)
    kind: str | None = None  # dns / refused / timeout / tls / proxy / proxy-auth / other
    seconds: float = 0.0

    def sentence(self) -> str:
        what = ROLE_LABELS.get(self.role, self.role)
        if self.answered:
            return f"{what}: {self.host} answered (HTTP {self.status}, {self.seconds:.1f} s)"
        return f"{what}: {self.host} did not answer: {self.failure}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _host(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or url
    return f"{host}:{parts.port}" if parts.port else host


def checkable(url: str) -> bool:
    """Only network indexes are asked; a wheelhouse folder or file:// URL is local."""
    return urlsplit(url).scheme in ("http", "https")


def _ask(client: httpx.Client, settings: EnvSettings, role: str, url: str) -> SourceAnswer:
    shown, host = redact_url(url), _host(url)
    started = time.monotonic()
    proxy = settings.proxies.for_url(url)
    try:
        with client.stream("GET", url) as response:  # headers only: the body is not read
            status = response.status_code
    except (httpx.HTTPError, OSError) as exc:
        failure = transport_failure(exc, proxy=proxy)
        return SourceAnswer(
            role, shown, host, False, failure=failure.reason, kind=failure.kind,
            seconds=round(time.monotonic() - started, 2),
        )  # fmt: skip
    seconds = round(time.monotonic() - started, 2)
    if status == 407:
        via = proxy_netloc(proxy) or "the proxy"
        asks = "refused the user name and password it was given" if has_credentials(proxy) else (
            "asks for a user name and password"
        )  # fmt: skip
        return SourceAnswer(
            role, shown, host, False, status, f"{via} {asks} (HTTP 407)", "proxy-auth", seconds
        )
    return SourceAnswer(role, shown, host, True, status, seconds=seconds)


def check_sources(
    settings: EnvSettings,
    targets: Iterable[tuple[str, str]],
    *,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> tuple[SourceAnswer, ...]:
    """Ask each ``(role, url)`` at once; one answer per target, in the given order."""
    wanted = [(role, url) for role, url in targets if checkable(url)]
    if not wanted:
        return ()
    client = make_client(settings, timeout_s=timeout_s)
    try:
        with ThreadPoolExecutor(max_workers=len(wanted), thread_name_prefix="source-check") as pool:
            futures = [pool.submit(_ask, client, settings, role, url) for role, url in wanted]
            return tuple(f.result() for f in futures)
    finally:
        client.close()
