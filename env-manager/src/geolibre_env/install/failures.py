"""Turning a failed install into one sentence and a next step.

Shared by the installer (uv's and pip's output, our own downloads) and the
doctor (which shows the last install's failure from ``last-install.json``).
uv's wording is read from its error lines (its ``-v`` debug lines are left
out); the most specific kind comes first. The context says what the failing
step talked to - the index or mirror and the proxy in between - so the
sentence can name them; credentials never appear (they are not in it).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from geolibre_env.errors import InstallError

FailureKind = str  # one of KINDS
KINDS = (
    "checksum", "disk-full", "permission", "path", "proxy-auth", "proxy", "certificate",
    "dns", "offline", "network", "missing-package", "unknown",
    "bundle",  # an offline bundle made for another computer or spec (bundle.py)
)  # fmt: skip
OFFLINE_ROUTE = "install from an offline bundle (geolibre-ml install --from BUNDLE)"
SUMMARY_MAX_CHARS = 300


@dataclass(frozen=True)
class FailureContext:
    """What the failing step talked to (every field already free of credentials)."""

    where: str = "the package index"  # "the mirror mirror.corp:8443", "the wheelhouse", ...
    host: str | None = None  # host[:port] of that index, when it is one
    proxy: str | None = None  # host:port of the proxy the step went through
    proxy_setting: str = "HTTPS_PROXY"
    proxy_has_credentials: bool = False
    # Files come from a folder (a wheelhouse, a bundle): offline is the point, and
    # "not in the cache" means "not in that folder".
    local: bool = False
    # Hosts that answered the plan's source check: the computer is online, only
    # the failing host is not reachable.
    answered: tuple[str, ...] = ()

    def others_answered(self, host: str) -> str:
        """``"pypi.org answered"`` for the hosts other than ``host``, or ``""``."""
        others = [h for h in dict.fromkeys(self.answered) if h != host]
        return f"{', '.join(others)} answered" if others else ""


@dataclass(frozen=True)
class InstallFailure:
    kind: FailureKind
    summary: str
    hint: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ClassifiedInstallError(InstallError):
    """An install failure with its kind, for ``last-install.json`` and the app."""

    def __init__(self, failure: InstallFailure) -> None:
        super().__init__(failure.summary, hint=failure.hint)
        self.failure = failure


def _search(pattern: str, text: str) -> re.Match[str] | None:
    return re.search(pattern, text, re.I | re.M)


def _first(pattern: str, text: str) -> str | None:
    match = _search(pattern, text)
    return match.group(1) if match else None


def _error_lines(output: str) -> str:
    """uv's and pip's error text without uv's ``-v`` debug log."""
    kept = [line for line in output.splitlines() if not line.startswith(("DEBUG ", "TRACE "))]
    return "\n".join(kept)


def _url_host(text: str) -> str | None:
    """host[:port] of the first URL in ``text`` (uv's error names the URL it fetched)."""
    match = _search(r"https?://(?:[^/\s@]*@)?(\[[^\]]+\]|[^/\s:'\")]+)(?::(\d+))?", text)
    if not match:
        match = _search(r"host='([^']+)', port=(\d+)", text)  # pip's urllib3 wording
    if not match:
        return None
    return f"{match.group(1)}:{match.group(2)}" if match.group(2) else match.group(1)


# What uv would have printed for each way a source check fails: the plan's check
# and the install then say the same sentence about the same route.
_ANSWER_TEXTS = {
    "dns": "error: Failed to fetch: `{url}`\n  Caused by: dns error: failed to lookup address",
    "refused": "error: Failed to fetch: `{url}`\n  Caused by: Connection refused (os error 111)",
    "timeout": "error: Failed to fetch: `{url}`\n  Caused by: operation timed out",
    "tls": "error: Failed to fetch: `{url}`\n  Caused by: invalid peer certificate: UnknownIssuer",
    "proxy": "error: Failed to fetch: `{url}`\n  Caused by: tunnel error: unsuccessful",
    "proxy-auth": "error: Failed to fetch: `{url}`\n  Caused by: HTTP status 407",
}


def failure_from_answer(answer: object, context: FailureContext) -> InstallFailure:
    """The install failure a failed source check (a ``SourceAnswer``) foretells."""
    kind = getattr(answer, "kind", None) or "other"
    url = str(getattr(answer, "url", ""))
    template = _ANSWER_TEXTS.get(kind)
    if template is not None:
        failure = classify_install_failure(template.format(url=url), context)
        if failure.kind != "unknown":
            return failure
    host = getattr(answer, "host", context.host)
    online = context.others_answered(str(host))
    return InstallFailure(
        "network",
        f"Could not reach {host} ({getattr(answer, 'failure', None) or 'no answer'})"
        + (f", while {online}." if online else "."),
        "Check the internet connection and the proxy settings (HTTPS_PROXY); without "
        f"internet, {OFFLINE_ROUTE}.",
    )


def classify_install_failure(output: str, context: FailureContext | None = None) -> InstallFailure:
    """What went wrong in ``output`` (already redacted) of uv or pip."""
    context = context or FailureContext()
    text = _error_lines(output)
    for check in _CHECKS:
        failure = check(text, context)
        if failure is not None:
            return failure
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
    return InstallFailure(
        "unknown",
        f"The package install failed: {last[:SUMMARY_MAX_CHARS] or 'no output'}.",
        "Run `geolibre-ml doctor --bundle` and attach the zip to a bug report.",
    )


def _checksum(text: str, ctx: FailureContext) -> InstallFailure | None:
    if not _search(r"Hash mismatch|DO NOT MATCH THE HASHES|does not match its checksum", text):
        return None
    what = _first(r"Hash mismatch for `([^`]+)`", text) or _first(r"^\s+(\S+) from ", text)
    named = f" ({what})" if what else ""
    return InstallFailure(
        "checksum",
        f"A downloaded file{named} did not match its published checksum, so it was not used.",
        f"Run the install again; if it fails the same way, something between this computer "
        f"and {ctx.where} (a proxy or the mirror) is altering files: tell your IT department.",
    )


def _disk_full(text: str, _ctx: FailureContext) -> InstallFailure | None:
    if not _search(r"No space left on device|os error 28|ENOSPC|Errno 28|disk is full", text):
        return None
    return InstallFailure(
        "disk-full",
        "The disk filled up during the install.",
        "Free some space (the plan shows how much is needed) and run the install again; "
        "it resumes where it stopped.",
    )


def _permission(text: str, _ctx: FailureContext) -> InstallFailure | None:
    if not _search(r"Permission denied|os error 13|Errno 13|Access is denied|os error 5\b", text):
        return None
    where = _first(r"`([^`]+)`: Permission denied", text) or _first(
        r"Permission denied[^\n]*?'([^']+)'", text
    )
    return InstallFailure(
        "permission",
        "The install was not allowed to write a file" + (f" ({where})." if where else "."),
        "Check that your user owns the GeoLibre data folder, and that antivirus software "
        "is not blocking it, then run the install again.",
    )


def _path(text: str, _ctx: FailureContext) -> InstallFailure | None:
    pattern = (
        r"File name too long|os error 36|Errno 36|os error 206|filename or extension is too "
        r"long|os error 123|filename, directory name, or volume label syntax|"
        r"UnicodeEncodeError|UnicodeDecodeError|surrogates not allowed"
    )
    if not _search(pattern, text):
        return None
    return InstallFailure(
        "path",
        "A file path in the install was too long or had characters this system could not store.",
        "Set GEOLIBRE_ML_HOME to a short folder with plain letters (for example C:\\GeoLibreML "
        "or ~/geolibre-ml) and run the install again.",
    )


def _proxy_auth(text: str, ctx: FailureContext) -> InstallFailure | None:
    if not _search(r"\b407\b|proxy authori[sz]ation required|Proxy Authentication Required", text):
        return None
    proxy = f"The proxy {ctx.proxy}" if ctx.proxy else "The proxy"
    if ctx.proxy_has_credentials:
        summary = f"{proxy} refused the user name and password in {ctx.proxy_setting} (HTTP 407)."
        hint = "Check the user name and password (they may have expired), or ask IT."
    else:
        summary = f"{proxy} asks for a user name and password (HTTP 407)."
        hint = (
            f"Put them in {ctx.proxy_setting} (http://user:password@host:port), or ask IT "
            f"which proxy to use."
        )
    return InstallFailure("proxy-auth", summary, hint)


def _proxy(text: str, ctx: FailureContext) -> InstallFailure | None:
    tunnel = _search(r"tunnel error|Cannot connect to proxy|ProxyError|proxy error", text)
    if not tunnel:
        return None
    why = "it refused the connection" if _search(r"refused", text) else "it did not answer"
    if _search(r"tunnel error: unsuccessful|Tunnel connection failed: \d+", text):
        why = f"it would not connect onwards to {ctx.host or 'the package index'}"
    proxy = f"the proxy {ctx.proxy}" if ctx.proxy else "the proxy"
    return InstallFailure(
        "proxy",
        f"The install could not get through {proxy}: {why}.",
        f"Check {ctx.proxy_setting} (or the system proxy settings); unset it if this "
        f"network needs no proxy.",
    )


def _certificate(text: str, ctx: FailureContext) -> InstallFailure | None:
    pattern = r"invalid peer certificate|CERTIFICATE_VERIFY_FAILED|certificate verify failed|"
    pattern += r"UnknownIssuer|self[- ]signed certificate|problem confirming the ssl certificate"
    if not _search(pattern, text):
        return None
    host = _url_host(text) or ctx.host or "a package server"
    why = "is not signed by an authority this computer trusts"
    if _search(r"NotValidForName|hostname mismatch|doesn't match", text):
        why = "was issued for another name"
    elif _search(r"Expired|has expired", text):
        why = "has expired"
    return InstallFailure(
        "certificate",
        f"The secure connection to {host} failed its certificate check: the certificate {why}.",
        "If your organisation inspects TLS, install its root certificate in the system trust "
        "store or set GEOLIBRE_ML_CA_BUNDLE to it (a PEM file); certificate checks stay on.",
    )


def _dns(text: str, ctx: FailureContext) -> InstallFailure | None:
    pattern = r"dns error|failed to lookup address|Name or service not known|"
    pattern += r"nodename nor servname|getaddrinfo|Temporary failure in name resolution|"
    pattern += r"No such host is known|Errno -[23]\b"
    if not _search(pattern, text):
        return None
    host = _url_host(text) or ctx.host or "the package index"
    online = ctx.others_answered(host)
    if online:
        return InstallFailure(
            "dns",
            f"The name {host} could not be found, while {online}: this computer is online, "
            f"but {host} is blocked, misspelt or not known to its name server.",
            "Check the index settings (UV_INDEX_URL, GEOLIBRE_ML_TORCH_INDEX_URL) or ask IT "
            f"to allow {host}; `geolibre-ml install --dry-run` shows each source.",
        )
    return InstallFailure(
        "dns",
        f"The name {host} could not be found: this computer looks offline, or the name is wrong.",
        f"Check the internet connection and the index settings (UV_INDEX_URL, "
        f"GEOLIBRE_ML_TORCH_INDEX_URL); without internet, {OFFLINE_ROUTE}.",
    )


def _offline(text: str, ctx: FailureContext) -> InstallFailure | None:
    pattern = r"network was disabled|Network connectivity is disabled|was not found in the cache"
    if ctx.local or not _search(pattern, text):
        return None
    name = _first(r"(?:Because |and )(\S+?)(?:[=<>!~]=?\S+)? was not found in the cache", text)
    what = f"the package {name}" if name else "a package"
    return InstallFailure(
        "offline",
        f"uv is in offline mode (UV_OFFLINE) and {what} is not in its cache or in {ctx.where}.",
        f"Unset UV_OFFLINE to download it, add it to the wheelhouse, or {OFFLINE_ROUTE}.",
    )


def _network(text: str, ctx: FailureContext) -> InstallFailure | None:
    pattern = r"Connection refused|Could not connect|Network is unreachable|timed out|"
    pattern += r"operation timed out|connection reset|No route to host|os error 111|"
    pattern += r"Failed to establish a new connection"
    if not _search(pattern, text):
        return None
    host = _url_host(text) or ctx.host or "the package index"
    why = "the connection was refused" if _search(r"refused|os error 111", text) else "no answer"
    online = ctx.others_answered(host)
    return InstallFailure(
        "network",
        f"Could not reach {host} ({why})" + (f", while {online}." if online else "."),
        f"Check the internet connection and the proxy settings (HTTPS_PROXY); without "
        f"internet, {OFFLINE_ROUTE}.",
    )


def _missing(text: str, ctx: FailureContext) -> InstallFailure | None:
    name = _first(
        r"(?:Because |and |depends on )(\S+?)(?:[=<>!~]=?\S+)? was not found in the "
        r"(?:package registry|provided package locations|cache)",
        text,
    ) or _first(r"Because there is no version of (\S+?)(?:\s|,|$)", text)
    name = name or _first(r"No matching distribution found for (\S+)", text)
    if not name:
        return None
    if "wheelhouse" in ctx.where:
        hint = (
            f"Add the wheel of {name} for this computer to the wheelhouse (UV_FIND_LINKS), "
            f"or {OFFLINE_ROUTE}."
        )
    else:
        hint = (
            "Ask whoever runs the mirror to add it (or to proxy PyPI and PyTorch's index), or "
            "point UV_INDEX_URL / GEOLIBRE_ML_TORCH_INDEX_URL at one that has it."
        )
    return InstallFailure(
        "missing-package", f"The package {name} is not available from {ctx.where}.", hint
    )


_CHECKS = (
    _checksum, _disk_full, _permission, _path, _proxy_auth, _proxy, _certificate, _dns,
    _offline, _network, _missing,
)  # fmt: skip
