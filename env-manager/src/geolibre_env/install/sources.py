"""Where an install gets its files: package indexes and mirrors, the Hub, or an
offline bundle - for the plan's "sources", uv's arguments, and failure messages.

PyPI (or its mirror: ``UV_INDEX_URL`` / ``UV_DEFAULT_INDEX``) serves the
packages, PyTorch's index (or ``GEOLIBRE_ML_TORCH_INDEX_URL``) serves torch,
the Hub (or ``HF_ENDPOINT``) the weights. Everything shown leaves without
credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from geolibre_env.install.failures import FailureContext
from geolibre_env.proxies import has_credentials, proxy_netloc
from geolibre_env.redact import redact_url
from geolibre_env.settings import DEFAULT_HUB_ENDPOINT, EnvSettings

PYPI_SIMPLE = "https://pypi.org/simple"
Step = Literal["torch", "packages"]
# Our own: uv must not mix another index into a bundle install.
INDEX_SETTINGS = ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL")


def torch_step_environment(env: dict[str, str]) -> dict[str, str]:
    """uv's environment for the torch step: torch's index is given explicitly, so the
    user's UV_INDEX / UV_EXTRA_INDEX_URL / UV_INDEX_URL must not add another index
    (uv would prefer theirs, and a mirror's torch may be another build). A
    wheelhouse (UV_FIND_LINKS) and offline settings stay: they are the user's
    deliberate air-gap."""
    return {k: v for k, v in env.items() if k not in INDEX_SETTINGS}


def netloc(url: str) -> str:
    """``host[:port]`` of ``url`` without credentials."""
    parts = urlsplit(url)
    host = parts.hostname or url
    return f"{host}:{parts.port}" if parts.port else host


def _wheelhouse_only(settings: EnvSettings) -> bool:
    env = settings.environ
    return bool(env.get("UV_FIND_LINKS")) and (
        _truthy(env.get("UV_NO_INDEX")) or _truthy(env.get("UV_OFFLINE"))
    )


def sources_local(settings: EnvSettings) -> bool:
    """uv is set to work offline (a wheelhouse, its cache): no index is asked."""
    return _wheelhouse_only(settings) or _truthy(settings.environ.get("UV_OFFLINE"))


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def package_index(settings: EnvSettings) -> tuple[str, str]:
    """(URL, the setting it came from) of the index the packages step uses."""
    for key in ("UV_INDEX_URL", "UV_DEFAULT_INDEX"):
        value = settings.environ.get(key, "").strip()
        if value:
            return value, key
    if settings.pypi_index_url:  # settings made without an environment (tests, the app)
        return settings.pypi_index_url, "UV_INDEX_URL"
    return PYPI_SIMPLE, "default"


@dataclass(frozen=True)
class IndexSource:
    """Packages from indexes (or a wheelhouse the user configured for uv)."""

    settings: EnvSettings
    kind: Literal["index"] = "index"

    def uv_args(self, step: Step, torch_index_url: str) -> list[str]:
        return ["--index-url", torch_index_url] if step == "torch" else []

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        return env

    def failure_context(self, step: Step, torch_index_url: str) -> FailureContext:
        if _wheelhouse_only(self.settings):
            return FailureContext(where="the wheelhouse", local=True)
        if step == "torch":
            url = torch_index_url
            mirror = bool(self.settings.torch_index_url)
            where = (
                f"the mirror {netloc(url)} (GEOLIBRE_ML_TORCH_INDEX_URL)"
                if mirror
                else f"the package index {netloc(url)}"
            )
        else:
            url, setting = package_index(self.settings)
            where = (
                f"the package index {netloc(url)}"
                if setting == "default"
                else f"the mirror {netloc(url)} ({setting})"
            )
        proxies = self.settings.proxies
        proxy = proxies.for_url(url)
        return FailureContext(
            where=where,
            host=netloc(url),
            proxy=proxy_netloc(proxy),
            proxy_setting=proxies.setting_for(url),
            proxy_has_credentials=has_credentials(proxy),
        )


@dataclass(frozen=True)
class BundleSource:
    """Packages from an offline bundle's wheels: uv offline, no index, nothing else."""

    wheels: Path
    archive: Path
    kind: Literal["bundle"] = "bundle"

    def uv_args(self, step: Step, torch_index_url: str) -> list[str]:
        return ["--offline", "--no-index", "--find-links", str(self.wheels)]

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in env.items() if k not in (*INDEX_SETTINGS, "UV_FIND_LINKS")}
        env.update({"UV_OFFLINE": "1", "UV_NO_INDEX": "1"})
        return env

    def failure_context(self, step: Step, torch_index_url: str) -> FailureContext:
        return FailureContext(where=f"the offline bundle {self.archive.name}", local=True)


PackageSource = IndexSource | BundleSource


def describe_sources(
    settings: EnvSettings,
    *,
    torch_index_url: str,
    torch_from: str,
    bundle: Path | None = None,
) -> dict[str, Any]:
    """What the plan and the doctor show: each source, the setting behind it, the proxy
    and the trust store (no credentials)."""
    env = settings.environ
    certificates = {
        "system_store": True,
        "extra_ca": str(settings.ca_bundle) if settings.ca_bundle else None,
    }
    if bundle is not None:
        where = f"the offline bundle {bundle}"
        return {
            "packages": {"url": where, "setting": "--from"},
            "torch": {"url": where, "setting": "--from"},
            "weights": {"url": where, "setting": "--from"},
            "offline": True,
            "proxy": {},
            "certificates": certificates,
        }
    packages_url, packages_setting = package_index(settings)
    extra = {
        key.lower(): redact_url(env[key])
        for key in ("UV_EXTRA_INDEX_URL", "UV_INDEX", "UV_FIND_LINKS")
        if env.get(key, "").strip()
    }
    hub_setting = "HF_ENDPOINT" if settings.hub_endpoint != DEFAULT_HUB_ENDPOINT else "default"
    return {
        "packages": {"url": redact_url(packages_url), "setting": packages_setting, **extra},
        "torch": {"url": redact_url(torch_index_url), "setting": torch_from},
        "weights": {"url": redact_url(settings.hub_endpoint), "setting": hub_setting},
        "offline": _wheelhouse_only(settings) or _truthy(env.get("UV_OFFLINE")),
        "proxy": settings.proxies.describe(),
        "certificates": certificates,
    }


def format_sources(sources: dict[str, Any]) -> list[str]:
    """The sources as plan lines (``geolibre-ml install --dry-run``)."""

    def origin(item: dict[str, Any]) -> str:
        setting = item.get("setting")
        return "" if setting in (None, "default") else f" ({setting})"

    lines = [
        f"packages from {sources['packages']['url']}{origin(sources['packages'])}",
        f"torch from {sources['torch']['url']}{origin(sources['torch'])}",
        f"weights from {sources['weights']['url']}{origin(sources['weights'])}",
    ]
    for key in ("extra_index_url", "index", "find_links"):
        if sources["packages"].get(key):
            lines.append(f"also {key.replace('_', ' ')}: {sources['packages'][key]}")
    proxy = sources.get("proxy") or {}
    if proxy:
        routes = ", ".join(f"{k} {v}" for k, v in proxy.items() if k != "from")
        lines.append(f"proxy: {routes} (from the {proxy.get('from')})")
    certs = sources.get("certificates") or {}
    extra_ca = f" + GEOLIBRE_ML_CA_BUNDLE={certs['extra_ca']}" if certs.get("extra_ca") else ""
    lines.append(f"certificates: the system trust store{extra_ca}; always verified")
    return lines
