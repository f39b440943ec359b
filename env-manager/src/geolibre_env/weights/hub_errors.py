"""The Hub fetch's failures. The runner (:mod:`geolibre_env.weights.hub_runner`) sees
huggingface_hub's exceptions and writes the sentence and the next step; here they
become exceptions, the parts that quote the network redacted once more (the hints
are fixed text: redacting "--token or HF_TOKEN" would mangle them).
"""

from __future__ import annotations

from typing import Any

from geolibre_env.errors import InstallCancelledError, WeightsError
from geolibre_env.redact import redact


class HubError(WeightsError):
    """A failure the runner explained: its kind, the host, the reason in words."""

    def __init__(
        self, message: str, *, hint: str, kind: str = "", host: str = "", reason: str = ""
    ) -> None:
        super().__init__(message, hint=hint)
        self.kind, self.host, self.reason = kind, host, reason
        self.server_message = ""  # the Hub's own X-Error-Message, redacted


class GatedWeightsError(HubError):
    """The Hub refused the token (401) or the licence is not accepted (403)."""


class HubOfflineError(HubError):
    """The Hub (or its CDN) could not be reached, or a transfer kept breaking."""


class WeightsIntegrityError(HubError):
    """A downloaded file did not match the Hub's checksum; it was discarded."""


class WeightsCancelledError(WeightsError, InstallCancelledError):
    """The user cancelled; the partial file is kept so the next run resumes."""


ERRORS: dict[str, type[HubError]] = {
    "gated": GatedWeightsError,
    "offline": HubOfflineError,
    "integrity": WeightsIntegrityError,
}


def runner_error(info: dict[str, Any]) -> HubError:
    """The exception for the runner's ``error`` line."""
    text = {key: redact(str(info.get(key) or "")) for key in ("message", "kind", "host", "reason")}
    error = ERRORS.get(str(info.get("error")), HubError)(hint=str(info.get("hint")), **text)
    error.server_message = redact(str(info.get("server") or ""))[:300]
    return error
