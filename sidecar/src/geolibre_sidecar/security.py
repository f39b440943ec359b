"""Request guards: the Host allow-list (DNS rebinding) and the per-launch token.

CORS is Starlette's own middleware; the order of all three is set in one list
in :mod:`geolibre_sidecar.app`.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from geolibre_sidecar.errors import BadRequest, Unauthorized, error_response

PUBLIC_PATHS = frozenset({"/health"})


# RFC 3986 authority without userinfo: an IP literal or a registered name, then
# an optional port. Anything else (userinfo, junk after "]", spaces) is refused.
_HOST = re.compile(
    r"(?:\[(?P<literal>[0-9a-f:.]+)\]|(?P<name>[a-z0-9.-]+))(?::(?P<port>[0-9]{1,5}))?"
)


def host_without_port(host: str) -> str | None:
    """``[::1]:8765`` -> ``::1``; ``localhost:8765`` -> ``localhost``; None if malformed."""
    match = _HOST.fullmatch(host.strip().lower())
    if match is None:
        return None
    if match["literal"] is not None:
        try:
            return str(ipaddress.IPv6Address(match["literal"]))
        except ValueError:
            return None
    return match["name"]


class HostGuard:
    """Refuse requests whose Host header is not ours: a web page that rebinds a
    DNS name to 127.0.0.1 still sends its own name as Host. Exactly one Host,
    well-formed (RFC 9112 section 3.2 says 400 otherwise)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(h.lower() for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = self._problem([v for k, v in scope["headers"] if k == b"host"])
            if problem is not None:
                await error_response(BadRequest(problem))(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _problem(self, values: list[bytes]) -> str | None:
        if len(values) != 1:
            return f"A request needs exactly one Host header, not {len(values)}."
        raw = values[0].decode("latin-1")
        host = host_without_port(raw)
        if host is None or host not in self.allowed:
            shown = raw[:64] or "(empty)"
            return f"Host {shown!r} is not allowed; use http://127.0.0.1:<port>."
        return None


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
