"""Turning a failed package install into one sentence and a next step.

Shared by the installer and the doctor. Patterns come from uv's and pip's
error output; the most specific comes first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class InstallFailure:
    kind: str
    summary: str
    hint: str


def _first(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text, re.I | re.M)
    return match.group(1) if match else None


def classify_install_failure(output: str, *, where: str = "the package index") -> InstallFailure:
    """What went wrong in uv's ``output`` (already redacted)."""
    missing = _first(r"Because (\S+?)(?:==\S+)? was not found in the (?:package registry|provided "
                     r"package locations)", output) or _first(
        r"No solution found.*?\n.*?(?:╰─▶|\s)\s*Because (?:there is no version of |only )?(\S+?)"
        r"[=<>!~ ].*?(?:not found|no version|unsatisfiable)", output)  # fmt: skip
    if missing:
        return InstallFailure(
            "missing-package",
            f"The package {missing} is not available from {where}.",
            "If you use a mirror or a wheelhouse, add that package to it; otherwise check the "
            "package index settings (UV_INDEX_URL, UV_FIND_LINKS).",
        )
    if re.search(r"No space left on device|os error 28|ENOSPC", output, re.I):
        return InstallFailure(
            "disk-full",
            "The disk filled up during the install.",
            "Free some space (the plan shows how much is needed) and run the install again; "
            "it resumes where it stopped.",
        )
    if re.search(r"Permission denied|os error 13|Access is denied", output, re.I):
        return InstallFailure(
            "permission",
            "The install was not allowed to write a file.",
            "Check that your user owns the GeoLibre data folder, and that antivirus software "
            "is not blocking it, then run the install again.",
        )
    if re.search(r"certificate|CERTIFICATE_VERIFY_FAILED|invalid peer certificate|UnknownIssuer",
                 output, re.I):  # fmt: skip
        host = _first(r"https?://([^/\s:]+)", output) or "a package server"
        return InstallFailure(
            "certificate",
            f"The secure connection to {host} failed its certificate check.",
            "A firewall may inspect TLS: install your organisation's root certificate in the "
            "system trust store, or point GEOLIBRE_ML_CA_BUNDLE at it.",
        )
    if re.search(r"\b407\b|Proxy Authentication Required", output, re.I):
        return InstallFailure(
            "proxy-auth",
            "The proxy asked for a user name and password.",
            "Put the credentials in HTTPS_PROXY (http://user:password@proxy:port) or ask IT.",
        )
    if re.search(r"dns error|failed to lookup address|Name or service not known|"
                 r"Could not connect|Connection refused|Network is unreachable|timed out|"
                 r"offline mode", output, re.I):  # fmt: skip
        host = _first(r"https?://([^/\s:]+)", output) or "the package index"
        return InstallFailure(
            "network",
            f"Could not reach {host}.",
            "Check the internet connection and proxy settings (HTTPS_PROXY), or install from "
            "an offline bundle (geolibre-ml install --from BUNDLE).",
        )
    last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
    return InstallFailure(
        "unknown",
        f"The package install failed: {last[:300] or 'no output'}.",
        "Run `geolibre-ml doctor --bundle` and attach the zip to a bug report.",
    )
