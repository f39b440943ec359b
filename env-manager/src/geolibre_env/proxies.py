"""Which proxy each download goes through: the environment first, else the OS settings.

``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``/``NO_PROXY`` (either case, the
lower-case one winning as in urllib and curl) are what the desktop app and a
terminal pass. When none is set, the platform's own settings are read the
way ``urllib.request.getproxies()`` does (the Windows registry, macOS System
Settings; on Linux the environment is the platform setting). The result is
handed to uv (as variables) and to httpx (as mounts), so packages and weights
take the same route.
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from geolibre_env.redact import redact_url

PROXY_KEYS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
ProxySource = Literal["environment", "system settings", "none"]


@dataclass(frozen=True)
class ProxyConfig:
    """The proxies every download uses; keys are :data:`PROXY_KEYS` (upper case)."""

    values: Mapping[str, str] = field(default_factory=dict)
    source: ProxySource = "none"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ProxyConfig:
        """From the environment; when it names no proxy at all, from the OS settings."""
        found = _from_mapping(environ)
        if found:
            return cls(found, "environment")
        system = platform_proxies()
        return cls(system, "system settings") if system else cls({}, "none")

    @property
    def no_proxy(self) -> tuple[str, ...]:
        raw = self.values.get("NO_PROXY", "")
        return tuple(item.strip() for item in raw.replace(";", ",").split(",") if item.strip())

    def for_scheme(self, scheme: str) -> str | None:
        """The proxy URL for ``http`` or ``https`` requests (``ALL_PROXY`` as the fallback)."""
        return self.values.get(f"{scheme.upper()}_PROXY") or self.values.get("ALL_PROXY")

    def for_url(self, url: str) -> str | None:
        """The proxy a request to ``url`` goes through, or None (direct, or NO_PROXY)."""
        parts = urlsplit(url)
        if not parts.scheme.startswith("http"):
            return None
        proxy = self.for_scheme(parts.scheme)
        if proxy is None or bypassed(parts.hostname or "", parts.port, self.no_proxy):
            return None
        return proxy

    def setting_for(self, url: str) -> str:
        """The variable (or system setting) a user edits to change ``url``'s proxy."""
        if self.source == "system settings":
            return "the system proxy settings"
        scheme = urlsplit(url).scheme.upper() or "HTTPS"
        return f"{scheme}_PROXY" if self.values.get(f"{scheme}_PROXY") else "ALL_PROXY"

    def child_environment(self) -> dict[str, str]:
        """Both spellings of every variable, for child processes (uv, pip): tools differ."""
        env: dict[str, str] = {}
        for key, value in self.values.items():
            env[key] = value
            env[key.lower()] = value
        return env

    def describe(self) -> dict[str, str]:
        """Without credentials, for the plan and the doctor."""
        shown = {key.lower(): redact_url(value) for key, value in self.values.items()}
        return {**shown, "from": self.source} if shown else {}


def proxy_netloc(url: str | None) -> str | None:
    """``host:port`` of a proxy URL, never its user name or password."""
    if not url:
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = parts.hostname or ""
    with contextlib.suppress(ValueError):
        if parts.port:
            return f"{host}:{parts.port}"
    return host or None


def has_credentials(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return bool(parts.username or parts.password)


def bypassed(host: str, port: int | None, no_proxy: tuple[str, ...]) -> bool:
    """Whether ``NO_PROXY`` sends ``host`` direct (curl's rules: suffixes, IPs, ``*``)."""
    host = host.lower().strip("[]")
    for entry in no_proxy:
        entry = entry.lower()
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and port is not None and entry_port != str(port):
            continue
        name = name.strip("[]").lstrip("*").lstrip(".")
        if "/" in name:
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(host) in ipaddress.ip_network(name, strict=False):
                    return True
            continue
        if host == name or host.endswith("." + name):
            return True
    return False


def _from_mapping(environ: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key in PROXY_KEYS:
        value = (environ.get(key.lower()) or environ.get(key) or "").strip()
        if value:
            found[key] = value
    # NO_PROXY alone is not a proxy: the OS settings may still name one.
    return found if set(found) - {"NO_PROXY"} else {}


def platform_proxies() -> dict[str, str]:
    """The OS proxy settings as ``urllib.request.getproxies()`` reads them, never the
    environment (the caller looked there first, in its own snapshot)."""
    raw: dict[str, str] = {}
    try:
        if sys.platform == "win32":
            raw = urllib.request.getproxies_registry()  # type: ignore[attr-defined]
        elif sys.platform == "darwin":
            raw = urllib.request.getproxies_macosx_sysconf()  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return {}
    found = {f"{k.upper()}_PROXY": v for k, v in raw.items() if k in ("http", "https") and v}
    if found:
        bypass = _platform_bypass()
        if bypass:
            found["NO_PROXY"] = bypass
    return found


def _platform_bypass() -> str:
    """The OS's "bypass the proxy for these hosts" list, comma separated."""
    try:
        if sys.platform == "win32":
            import winreg

            key = r"Software\Microsoft\Windows\CurrentVersion\Internet Settings"
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key) as handle:
                value = str(winreg.QueryValueEx(handle, "ProxyOverride")[0])
            items = [i.strip() for i in value.split(";") if i.strip() and i.strip() != "<local>"]
            return ",".join(items)
        if sys.platform == "darwin":
            from _scproxy import _get_proxy_settings  # type: ignore[import-not-found]

            return ",".join(str(item) for item in _get_proxy_settings().get("exceptions", ()))
    except (OSError, ImportError, ValueError):
        return ""
    return ""
