"""The one place HTTP clients for downloads are built, and their failures explained.

TLS verification is always on. Trust comes from the system's default store
(which honours ``SSL_CERT_FILE``/``SSL_CERT_DIR``), certifi's bundle (for
Pythons whose OpenSSL finds no system store) and ``GEOLIBRE_ML_CA_BUNDLE`` (a
corporate root for TLS-inspecting proxies). Proxies come from the environment
and the OS settings (``trust_env``).
"""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import certifi
import httpx

from geolibre_env import __version__
from geolibre_env.errors import ConfigError
from geolibre_env.redact import redact, redact_url
from geolibre_env.settings import EnvSettings

USER_AGENT = f"geolibre-ml/{__version__}"
DEFAULT_TIMEOUT_S = 30.0
# A dead route should fail in seconds, a slow CDN read may legitimately stall longer.
CONNECT_TIMEOUT_S = 15.0
REASON_MAX_CHARS = 200
PROXY_AUTH_STATUS = re.compile(r"\b407\b")

FailureKind = Literal["tls", "proxy", "dns", "refused", "timeout", "dropped", "other"]


def ssl_context(settings: EnvSettings) -> ssl.SSLContext:
    """A verifying TLS context: system store + certifi + the configured CA bundle."""
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=certifi.where())
    bundle = settings.ca_bundle
    if bundle is not None:
        try:
            if bundle.is_dir():
                context.load_verify_locations(capath=str(bundle))
            else:
                context.load_verify_locations(cafile=str(bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"GEOLIBRE_ML_CA_BUNDLE={bundle} cannot be used as a certificate bundle: {exc}.",
                hint="Point GEOLIBRE_ML_CA_BUNDLE at a PEM file of trusted root certificates.",
            ) from None
    return context


def make_client(settings: EnvSettings, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> httpx.Client:
    """A new ``httpx.Client`` for downloads; the caller closes it (it is costly: reuse it)."""
    return httpx.Client(
        verify=ssl_context(settings),
        trust_env=True,
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S)),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


@dataclass(frozen=True)
class TransportFailure:
    """What went wrong on the wire: a kind to choose a hint, a reason to show."""

    kind: FailureKind
    reason: str


def transport_failure(exc: BaseException) -> TransportFailure:
    """Classify an httpx transport error (or anything in its cause chain)."""
    chain = _chain(exc)
    text = redact(" ".join(str(item) for item in chain))
    lowered = text.lower()
    if isinstance(exc, httpx.ProxyError) or PROXY_AUTH_STATUS.search(text):
        return TransportFailure("proxy", f"the proxy refused the connection ({_short(exc)})")
    if any(isinstance(item, ssl.SSLError) for item in chain) or "certificate" in lowered:
        reason = "its TLS certificate is not trusted on this computer"
        if "certificate_verify_failed" not in lowered:
            reason = f"the TLS handshake failed ({_short(exc)})"
        return TransportFailure("tls", reason)
    if isinstance(exc, httpx.TimeoutException):
        what = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for data"
        return TransportFailure("timeout", f"timed out while {what}")
    if any(isinstance(item, socket.gaierror) for item in chain) or any(
        marker in lowered
        for marker in ("name or service not known", "nodename nor servname", "getaddrinfo")
    ):
        return TransportFailure("dns", "the name could not be resolved (no DNS answer)")
    if any(isinstance(item, ConnectionRefusedError) for item in chain) or "refused" in lowered:
        return TransportFailure("refused", "the connection was refused")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return TransportFailure("dropped", "the connection was cut off")
    return TransportFailure("other", _short(exc))


def classify_transport_error(exc: BaseException, url: str) -> str:
    """One sentence for a connect/DNS/timeout/TLS/proxy failure talking to ``url``."""
    failure = transport_failure(exc)
    sentence = f"Could not reach {host_of(url)}: {failure.reason}."
    if failure.kind == "tls":
        sentence = sentence[:-1] + (
            "; if a corporate proxy inspects TLS, set GEOLIBRE_ML_CA_BUNDLE to its root"
            " certificate."
        )
    elif failure.kind == "proxy":
        sentence = sentence[:-1] + "; check HTTPS_PROXY (and its user name and password)."
    return sentence


def host_of(url: str) -> str:
    """``host[:port]`` of a URL, never its credentials, path or signed query."""
    parts = urlsplit(redact_url(url))
    host = parts.hostname or redact_url(url)
    return f"{host}:{parts.port}" if parts.port else host


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _short(exc: BaseException) -> str:
    text = redact(str(exc)) or type(exc).__name__
    return text if len(text) <= REASON_MAX_CHARS else text[: REASON_MAX_CHARS - 1] + "…"
