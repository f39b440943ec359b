"""The sidecar's errors and the one table that maps every error to an HTTP status.

The status says whose fault it is: 4xx the request (nothing was forwarded),
501 this computer cannot run what was asked, 502 the backend broke mid-request,
503 there is no backend (and why), 504 the backend took too long. The body is
always ``{"detail": "..."}``.
"""

from __future__ import annotations

import logging

from geolibre_env.errors import (
    BackendError,
    ConfigError,
    DiskSpaceError,
    GeoLibreError,
    InstallBusyError,
    NotInstalledError,
)
from geolibre_env.redact import redact
from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger("geolibre.sidecar")


class SidecarError(Exception):
    """Base class; ``detail`` is shown to the user as is, with ``hint`` (what to do) and
    ``cause`` (a machine-readable reason, as in samgeo-api failures) when known."""

    def __init__(
        self,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        hint: str | None = None,
        cause: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.hint = hint
        self.cause = cause

    def body(self) -> dict[str, str]:
        extra = {"cause": self.cause, "hint": self.hint}
        return {"detail": self.detail, **{k: v for k, v in extra.items() if v}}


class BadRequest(SidecarError):
    """Malformed request (not multipart, broken multipart)."""


class Unauthorized(SidecarError):
    """Missing or wrong token."""


class PayloadTooLarge(SidecarError):
    """The upload is over GEOLIBRE_ML_MAX_UPLOAD_MB."""


class InvalidField(SidecarError):
    """A field is unknown, missing or of the wrong type."""


class TooManyRequests(SidecarError):
    """More segmentation requests in flight than GEOLIBRE_ML_MAX_IN_FLIGHT."""


class RequestTimeout(SidecarError):
    """The client sent its request body too slowly (GEOLIBRE_ML_BODY_IDLE_TIMEOUT_S)."""


class BackendBroke(SidecarError):
    """The backend failed in the middle of a request (crash, dropped connection)."""


class BackendUnavailable(SidecarError):
    """There is no backend to send the request to; the detail says why."""


class BackendTimeout(SidecarError):
    """The backend did not answer within GEOLIBRE_ML_UPSTREAM_TIMEOUT_S."""


class NotFound(SidecarError):
    """No such job (never made, or deleted)."""


class Conflict(SidecarError):
    """The request conflicts with something in progress (an install)."""


class NotSupportedHere(SidecarError):
    """A valid request this computer cannot serve (SAM 3's meta implementation without
    CUDA): not the request's fault, and not temporary, so neither 4xx nor 503."""


STATUS_BY_ERROR: tuple[tuple[type[Exception], int], ...] = (
    (BadRequest, 400),
    (Unauthorized, 401),
    (PayloadTooLarge, 413),
    (InvalidField, 422),
    (TooManyRequests, 429),
    (RequestTimeout, 408),
    (NotFound, 404),
    (Conflict, 409),
    (NotSupportedHere, 501),
    (BackendBroke, 502),
    (BackendUnavailable, 503),
    (BackendTimeout, 504),
    # The env manager's errors, raised into request handlers.
    (InstallBusyError, 409),
    (DiskSpaceError, 507),
    (NotInstalledError, 503),
    (BackendError, 503),
    (ConfigError, 500),
    (GeoLibreError, 500),
)


def status_for(exc: Exception) -> int:
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            return status
    return 500


def error_response(exc: Exception) -> JSONResponse:
    """The JSON error for any exception; unknown ones never show a traceback."""
    status = status_for(exc)
    if isinstance(exc, SidecarError):
        return JSONResponse(exc.body(), status_code=status, headers=exc.headers)
    if isinstance(exc, GeoLibreError):
        return JSONResponse({"detail": redact(str(exc))}, status_code=status)
    log.exception("unexpected error")
    return JSONResponse(
        {"detail": "The sidecar hit an unexpected error; details are in its log."},
        status_code=500,
    )


async def handle_error(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(exc)


EXCEPTION_HANDLERS = {
    SidecarError: handle_error,
    GeoLibreError: handle_error,
    Exception: handle_error,
}
