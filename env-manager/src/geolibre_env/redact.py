"""One redaction mechanism for logs, errors, status and diagnostics.

Two layers: known secret values registered at run time (the sidecar token, a
Hub token read from a file) are replaced wherever they appear, and patterns
catch the shapes secrets come in (Hub tokens, bearer headers, URL passwords,
``*_TOKEN=`` assignments) even when nobody registered them.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# Names whose values are secrets wherever they appear (env vars, JSON keys).
_SECRET_NAME = re.compile(
    r"(token|secret|password|passwd|pwd|api[_-]?key|authorization|credential|cookie)", re.I
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Hugging Face tokens (hf_ + 30-40 alphanumerics) and the old api_ form.
    (re.compile(r"\b(hf_|api_)[A-Za-z0-9]{20,}\b"), MASK),
    # Authorization / token headers, in HTTP dumps and in repr()s of dicts.
    (
        re.compile(
            r"(?i)((?:authorization|proxy-authorization|x-geolibre-token)['\"]?\s*[:=]\s*['\"]?)"
            r"(?:(?:bearer|basic|token)\s+)?[^\s'\",}]+"
        ),
        r"\1" + MASK,
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + MASK),
    # user:password@ (or a bare token@) in any URL.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@:]*(?::[^/\s@]*)?@"), r"\1" + MASK + "@"),
    # NAME_TOKEN=value, --token value, password=value ...
    (
        re.compile(
            r"(?i)\b([A-Z0-9_]*(?:TOKEN|SECRET|PASSWORD|PASSWD|API_KEY)[A-Z0-9_]*\s*[=:]\s*)"
            r"(?!\*\*\*)[^\s'\",;&]+"
        ),
        r"\1" + MASK,
    ),
    (re.compile(r"(?i)(--(?:token|password|hf-token)[= ])\S+"), r"\1" + MASK),
    # Signed download links (CDN redirects): the signature grants access on its own.
    (
        re.compile(
            r"(?i)([?&](?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature"
            r"|Policy|Key-Pair-Id|sig|token)=)[^&\s'\"]+"
        ),
        r"\1" + MASK,
    ),
)

# Every pattern above needs one of these words or shapes: text without any is
# returned after a single scan (most log lines), not eight.
_TRIGGER = re.compile(
    r"(?i)hf_|api_|bearer|basic|authori|token|secret|passw|api_key|://|--|"
    r"signature|credential|policy|key-pair|sig="
)

_known: set[str] = set()
_known_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a secret value so it is masked wherever it shows up later."""
    if value and len(value) >= 6:
        with _known_lock:
            _known.add(value)


def redact(text: str) -> str:
    """``text`` with every secret we know of, or can recognise, masked."""
    if not text:
        return text
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    if not _TRIGGER.search(text):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_url(url: str) -> str:
    """A URL without its user name and password (the host stays readable)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if parts.username is None and parts.password is None:
        return redact(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return redact(urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)))


def redact_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a (nested) mapping with secret-named keys masked and strings redacted."""
    return {key: _redact_value(key, value) for key, value in values.items()}


def _redact_value(key: str, value: Any) -> Any:
    if isinstance(value, Mapping):
        return redact_mapping(value)
    if isinstance(value, list | tuple):
        return [_redact_value(key, item) for item in value]
    if isinstance(value, str):
        if _SECRET_NAME.search(key) and value and not _is_flag_like(key):
            return MASK
        return redact_url(value) if "://" in value else redact(value)
    return value


def _is_flag_like(key: str) -> bool:
    # "token_configured": yes/no answers about a secret are fine to show.
    return key.endswith(("_configured", "_present", "_source"))


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info:
            # Render the traceback now so the secret cannot come back through it.
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True
