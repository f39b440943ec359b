"""The env manager's settings, read once from the environment.

Nothing else in the package reads ``os.environ``: callers build an
:class:`EnvSettings` (``EnvSettings.from_environ()``) and pass it down.
:class:`EnvReader` is the typed key reader the sidecar's settings use too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from geolibre_env.errors import ConfigError
from geolibre_env.paths import Paths
from geolibre_env.proxies import ProxyConfig

T = TypeVar("T")

DEFAULT_HUB_ENDPOINT = "https://huggingface.co"


class EnvReader:
    """Reads keys with a cast and a default; a bad value names the key and the value."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def str(self, key: str, default: str | None = None) -> str | None:
        value = self.environ.get(key, "").strip()
        return value or default

    def cast(self, key: str, cast: Callable[[str], T], default: T, *, what: str) -> T:
        raw = self.environ.get(key, "").strip()
        if not raw:
            return default
        try:
            return cast(raw)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{key}={raw!r} is not {what}.", hint=f"Set {key} to {what}, or unset it."
            ) from None

    def int(self, key: str, default: int, *, minimum: int = 0) -> int:
        value = self.cast(key, int, default, what=f"a whole number >= {minimum}")
        if value < minimum:
            raise ConfigError(
                f"{key}={value} is below {minimum}.", hint=f"Set {key} to at least {minimum}."
            )
        return value

    def float(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.cast(key, float, default, what=f"a number >= {minimum:g}")
        if value < minimum:
            raise ConfigError(
                f"{key}={value:g} is below {minimum:g}.", hint=f"Set {key} to at least {minimum:g}."
            )
        return value

    def bool(self, key: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            lowered = raw.lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)

        return self.cast(key, parse, default, what="a yes/no value (1/0, true/false)")

    def path(self, key: str) -> Path | None:
        raw = self.str(key)
        return Path(raw).expanduser() if raw else None

    def list(self, key: str) -> tuple[str, ...]:
        raw = self.str(key) or ""
        return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class EnvSettings:
    """Where things live and how to reach package indexes and the Hub."""

    paths: Paths
    spec_path: Path | None = None
    uv_path: str | None = None
    torch_index_url: str | None = None
    pypi_index_url: str | None = None
    hub_endpoint: str = DEFAULT_HUB_ENDPOINT
    hub_token: str | None = field(default=None, repr=False)
    checkpoint_path: Path | None = None
    ca_bundle: Path | None = None
    nvidia_smi: str = "nvidia-smi"
    # The Python whose huggingface_hub fetches the weights (default: the model
    # environment's; a bundle export without one: ours).
    hub_python: str | None = None
    # Proxies for every download (environment, else the OS settings), read once.
    proxies: ProxyConfig = field(default_factory=ProxyConfig)
    # A snapshot of the process environment: the base for child environments
    # (proxies, UV_* settings) so nobody needs to read os.environ again.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> EnvSettings:
        env = dict(os.environ if environ is None else environ)
        read = EnvReader(env)
        return cls(
            paths=Paths.resolve(read.path("GEOLIBRE_ML_HOME")),
            spec_path=read.path("GEOLIBRE_ML_SPEC"),
            # uv run exports UV (the uv binary that runs us): the bundled copy.
            uv_path=read.str("GEOLIBRE_ML_UV") or read.str("UV"),
            torch_index_url=read.str("GEOLIBRE_ML_TORCH_INDEX_URL"),
            pypi_index_url=read.str("UV_INDEX_URL") or read.str("UV_DEFAULT_INDEX"),
            hub_endpoint=(read.str("HF_ENDPOINT") or DEFAULT_HUB_ENDPOINT).rstrip("/"),
            hub_token=read.str("HF_TOKEN") or read.str("HUGGING_FACE_HUB_TOKEN"),
            checkpoint_path=read.path("SAM3_CHECKPOINT_PATH"),
            ca_bundle=read.path("GEOLIBRE_ML_CA_BUNDLE"),
            nvidia_smi=read.str("GEOLIBRE_ML_NVIDIA_SMI", "nvidia-smi") or "nvidia-smi",
            hub_python=read.str("GEOLIBRE_ML_HUB_PYTHON"),
            proxies=ProxyConfig.from_environ(env),
            environ=env,
        )
