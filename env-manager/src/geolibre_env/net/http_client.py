"""The one place HTTP clients for downloads are built, and their failures explained.

TLS verification is always on: the operating system's trust store (through
``truststore``) plus ``GEOLIBRE_ML_CA_BUNDLE`` (a corporate root for
TLS-inspecting proxies). Proxies come from the settings (the environment, else
the OS settings; :mod:`geolibre_env.proxies`), never from httpx's own reading
of ``os.environ``, so a download takes the route uv takes.
"""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import httpx

from geolibre_env import __version__
from geolibre_env.errors import ConfigError
from geolibre_env.net.trust import ssl_context as trust_context
from geolibre_env.proxies import ProxyConfig, has_credentials, proxy_netloc
from geolibre_env.redact import redact, redact_url
from geolibre_env.settings import EnvSettings

USER_AGENT = f"geolibre-ml/{__version__}"
DEFAULT_TIMEOUT_S = 30.0
# A dead route should fail in seconds, a slow CDN read may legitimately stall longer.
CONNECT_TIMEOUT_S = 15.0
REASON_MAX_CHARS = 200
PROXY_AUTH_STATUS = re.compile(r"\b407\b")

FailureKind = Literal["tls", "proxy", "proxy-auth", "dns", "refused", "timeout", "dropped", "other"]


def ssl_context(settings: EnvSettings) -> ssl.SSLContext:
    """A verifying TLS context: the OS trust store + the configured CA bundle."""
    return trust_context(settings.ca_bundle)


def proxy_mounts(
    proxies: ProxyConfig, *, verify: ssl.SSLContext
) -> dict[str, httpx.BaseTransport | None]:
    """httpx mounts for ``proxies``: a proxy transport per scheme, NO_PROXY hosts direct."""
    mounts: dict[str, httpx.BaseTransport | None] = {}
    if "*" in proxies.no_proxy:
        return mounts
    for scheme in ("http", "https"):
        url = proxies.for_scheme(scheme)
        if url:
            try:
                mounts[f"{scheme}://"] = httpx.HTTPTransport(proxy=url, verify=verify)
            except (ValueError, ImportError) as exc:
                raise ConfigError(
                    f"The proxy {redact_url(url)} cannot be used: {exc}.",
                    hint="Use an http:// proxy URL in HTTPS_PROXY / HTTP_PROXY.",
                ) from None
    if mounts:
        for entry in proxies.no_proxy:
            if "/" not in entry:  # httpx mounts cannot express CIDR ranges
                mounts[_no_proxy_pattern(entry)] = None  # None: the client's direct transport
    return mounts


def _no_proxy_pattern(entry: str) -> str:
    """A NO_PROXY entry as an httpx mount pattern (the rules httpx itself applies)."""
    if "://" in entry:
        return entry
    host = entry.lstrip("*").lstrip(".") if entry.startswith(("*", ".")) else entry
    if host.replace(".", "").isdigit() or host == "localhost" or ":" in host.strip("[]"):
        bare = host if not (":" in host and host.count(":") > 1) else f"[{host.strip('[]')}]"
        return f"all://{bare}"
    return f"all://*{host}"


def make_client(settings: EnvSettings, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> httpx.Client:
    """A new ``httpx.Client`` for downloads; the caller closes it (reuse it: it has a pool)."""
    verify = ssl_context(settings)
    timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S))
    return httpx.Client(
        verify=verify,
        trust_env=False,
        mounts=proxy_mounts(settings.proxies, verify=verify),
        timeout=timeout,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


@dataclass(frozen=True)
class TransportFailure:
    """What went wrong on the wire: a kind to choose a hint, a reason to show."""

    kind: FailureKind
    reason: str


def transport_failure(exc: BaseException, *, proxy: str | None = None) -> TransportFailure:
    """Classify an httpx transport error (or anything in its cause chain); ``proxy`` is
    the proxy URL the request went through, so its failures name it (never its password)."""
    chain = _chain(exc)
    text = redact(" ".join(str(item) for item in chain))
    lowered = text.lower()
    via = proxy_netloc(proxy)
    if PROXY_AUTH_STATUS.search(text) and (via or isinstance(exc, httpx.ProxyError)):
        return TransportFailure("proxy-auth", proxy_auth_reason(via, has_credentials(proxy)))
    if isinstance(exc, httpx.ProxyError):
        where = f"the proxy {via}" if via else "the proxy"
        return TransportFailure("proxy", f"{where} refused to connect onwards ({_short(exc)})")
    if any(isinstance(item, ssl.SSLError) for item in chain) or "certificate" in lowered:
        reason = "its TLS certificate is not trusted on this computer"
        if "certificate_verify_failed" not in lowered:
            reason = f"the TLS handshake failed ({_short(exc)})"
        return TransportFailure("tls", reason)
    failure = _connection_failure(exc, chain, lowered)
    if via and isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        # Through a proxy we only ever connect to the proxy: it is what failed.
        return TransportFailure("proxy", f"the proxy {via} could not be reached ({failure.reason})")
    return failure


def proxy_auth_reason(proxy: str | None, with_credentials: bool) -> str:
    """Why a proxy answered 407, in words (``proxy`` is ``host:port``)."""
    where = f"the proxy {proxy}" if proxy else "the proxy"
    if with_credentials:
        return f"{where} refused the user name and password it was given (HTTP 407)"
    return f"{where} asks for a user name and password (HTTP 407)"


def _connection_failure(
    exc: BaseException, chain: list[BaseException], lowered: str
) -> TransportFailure:
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


def classify_transport_error(exc: BaseException, url: str, *, proxy: str | None = None) -> str:
    """One sentence for a connect/DNS/timeout/TLS/proxy failure talking to ``url``."""
    failure = transport_failure(exc, proxy=proxy)
    sentence = f"Could not reach {host_of(url)}: {failure.reason}."
    if failure.kind == "tls":
        sentence = sentence[:-1] + (
            "; if a corporate proxy inspects TLS, set GEOLIBRE_ML_CA_BUNDLE to its root"
            " certificate."
        )
    elif failure.kind in ("proxy", "proxy-auth"):
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
