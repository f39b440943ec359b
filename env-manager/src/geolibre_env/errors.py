"""The env manager's exceptions: each message says what happened and what to do.

The CLI catches :class:`GeoLibreError` once and prints ``message``; the sidecar
maps the classes to HTTP statuses in one table (``geolibre_sidecar.errors``).
"""

from __future__ import annotations


class GeoLibreError(Exception):
    """Base class. ``message`` is for the user; ``hint`` is the next step."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class ConfigError(GeoLibreError):
    """A setting has a value we cannot use; the message names the key."""


class InstallError(GeoLibreError):
    """Provisioning the model environment failed; the previous one is untouched."""


class InstallBusyError(InstallError):
    """Another install holds the lock."""


class InstallCancelledError(InstallError):
    """The user cancelled; nothing that worked before was lost."""


class DiskSpaceError(InstallError):
    """Not enough free disk to start."""


class WeightsError(GeoLibreError):
    """The model weights could not be fetched or found."""


class NotInstalledError(GeoLibreError):
    """No verified model environment exists yet."""


class BackendError(GeoLibreError):
    """samgeo-api could not be started or stopped."""


class BackendStartError(BackendError):
    """samgeo-api exited or stalled during start-up."""


class ToolError(GeoLibreError):
    """An external tool (uv, nvidia-smi, the model env's Python) failed."""

    def __init__(
        self,
        message: str,
        *,
        command: list[str] | None = None,
        returncode: int | None = None,
        output_tail: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        # Never the environment: it may hold access tokens.
        self.command = command or []
        self.returncode = returncode
        self.output_tail = output_tail
