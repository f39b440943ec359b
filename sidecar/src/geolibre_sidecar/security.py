"""Request guards: the Host allow-list (DNS rebinding) and the per-launch token.

CORS is Starlette's own middleware; the order of all three is set in one list
in :mod:`geolibre_sidecar.app`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from geolibre_sidecar.errors import BadRequest, Unauthorized, error_response

PUBLIC_PATHS = frozenset({"/health"})


def host_without_port(host: str) -> str:
    """``[::1]:8765`` -> ``::1``; ``localhost:8765`` -> ``localhost``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class HostGuard:
    """Refuse requests whose Host header is not ours: a web page that rebinds a
    DNS name to 127.0.0.1 still sends its own name as Host."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(h.lower() for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = host_without_port(Headers(scope=scope).get("host", ""))
            if host not in self.allowed:
                shown = host[:64] or "(none)"
                response = error_response(
                    BadRequest(f"Host {shown!r} is not allowed; use http://127.0.0.1:<port>.")
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def presented_token(headers: Headers) -> str | None:
    """The token from ``X-GeoLibre-Token`` or ``Authorization: Bearer``."""
    token = headers.get("x-geolibre-token")
    if token:
        return token.strip()
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return None


class TokenAuth:
    """Require the launch token on everything but /health (and CORS pre-flight,
    which the CORS middleware in front of us answers)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            presented = presented_token(Headers(scope=scope))
            # Constant-time: the comparison must not reveal how much matched.
            if presented is None or not hmac.compare_digest(presented.encode(), self._token):
                reason = "is missing" if presented is None else "is wrong"
                response = error_response(
                    Unauthorized(
                        f"The sidecar token {reason}: send it as X-GeoLibre-Token or "
                        "Authorization: Bearer.",
                        headers={"WWW-Authenticate": "Bearer"},
                    )
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
