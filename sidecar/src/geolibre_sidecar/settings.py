"""The sidecar's settings, read once from the environment the desktop app passes.

Every key is ``GEOLIBRE_ML_*`` (plus ``GEOLIBRE_SIDECAR_TOKEN``) and is listed
in the README; a bad value stops start-up with a message naming the key.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from geolibre_env.backend import RestartPolicy, SupervisorConfig
from geolibre_env.errors import ConfigError
from geolibre_env.settings import EnvReader, EnvSettings

MIB = 1024 * 1024
DEFAULT_MAX_UPLOAD_MB = 16 * 1024  # a multi-GB GeoTIFF fits with room to spare
DEFAULT_ALLOWED_HOSTS = ("127.0.0.1", "localhost", "::1")
# The origins GeoLibre's webview and dev server use.
DEFAULT_CORS_ORIGINS = (
    "tauri://localhost",
    "http://tauri.localhost",
    "https://tauri.localhost",
    "http://localhost:5173",
    "http://127.0.0.1:5173",
)


@dataclass(frozen=True)
class SidecarSettings:
    """Everything the app factory needs; build with :meth:`from_environ`."""

    token: str | None = field(default=None, repr=False)
    samgeo_url: str | None = None
    samgeo_cmd: tuple[str, ...] | None = None
    default_model: str = "sam3"
    # Start the managed backend with the sidecar and load the default text model.
    prewarm: bool = False
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * MIB
    max_in_flight: int = 4
    upstream_timeout_s: float = 1800.0
    # Slow and idle clients (README, security): connections, headers, upload pace.
    max_connections: int = 1000
    header_timeout_s: float = 10.0
    body_idle_timeout_s: float = 10.0
    min_upload_bytes_per_s: int = 16 * 1024
    max_model_variants: int = 2
    # Extra samgeo-api servers for tiled jobs: (url, tiles at once).
    job_backends: tuple[tuple[str, int], ...] = ()
    # Managed samgeo-apis for jobs on a multi-NVIDIA-GPU machine: one per GPU, at most
    # this many (None: all); 0 or 1: only the main one, not pinned to a GPU.
    gpu_backends: int | None = None
    allowed_hosts: tuple[str, ...] = DEFAULT_ALLOWED_HOSTS
    cors_origins: tuple[str, ...] = DEFAULT_CORS_ORIGINS
    log_level: str = "INFO"
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    env: EnvSettings = field(default_factory=lambda: EnvSettings.from_environ({}))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SidecarSettings:
        env = dict(os.environ if environ is None else environ)
        read = EnvReader(env)
        cmd = read.str("GEOLIBRE_ML_SAMGEO_CMD")
        try:
            argv = tuple(shlex.split(cmd, posix=sys.platform != "win32")) if cmd else None
        except ValueError as exc:
            raise ConfigError(
                f"GEOLIBRE_ML_SAMGEO_CMD={cmd!r} cannot be parsed: {exc}.",
                hint="Quote paths with spaces, e.g. '\"/opt/my env/bin/samgeo-api\"'.",
            ) from None
        url = read.str("GEOLIBRE_ML_SAMGEO_URL")
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(
                "GEOLIBRE_ML_SAMGEO_URL must start with http:// or https://.",
                hint="For example GEOLIBRE_ML_SAMGEO_URL=http://127.0.0.1:8000",
            )
        policy = RestartPolicy(
            max_restarts=read.int("GEOLIBRE_ML_RESTART_LIMIT", 3),
            window_s=read.float("GEOLIBRE_ML_RESTART_WINDOW_S", 300.0, minimum=1.0),
            backoff_initial_s=read.float("GEOLIBRE_ML_RESTART_BACKOFF_S", 1.0),
        )
        supervisor = SupervisorConfig(
            start_stall_s=read.float("GEOLIBRE_ML_START_STALL_S", 60.0, minimum=0.5),
            start_timeout_s=read.float("GEOLIBRE_ML_START_TIMEOUT_S", 900.0, minimum=1.0),
            health_interval_s=read.float("GEOLIBRE_ML_HEALTH_INTERVAL_S", 10.0, minimum=0.1),
            hang_restart_s=read.float("GEOLIBRE_ML_HANG_RESTART_S", 1800.0, minimum=1.0),
            idle_unload_s=read.float("GEOLIBRE_ML_IDLE_UNLOAD_S", 0.0),
            stop_timeout_s=read.float("GEOLIBRE_ML_STOP_TIMEOUT_S", 10.0, minimum=0.1),
            policy=policy,
        )
        return cls(
            token=read.str("GEOLIBRE_SIDECAR_TOKEN"),
            samgeo_url=url.rstrip("/") if url else None,
            samgeo_cmd=argv or None,
            default_model=read.str("GEOLIBRE_ML_DEFAULT_MODEL", "sam3") or "sam3",
            prewarm=read.bool("GEOLIBRE_ML_PREWARM", False),
            max_upload_bytes=read.int("GEOLIBRE_ML_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB, minimum=1)
            * MIB,
            max_in_flight=read.int("GEOLIBRE_ML_MAX_IN_FLIGHT", 4, minimum=1),
            upstream_timeout_s=read.float("GEOLIBRE_ML_UPSTREAM_TIMEOUT_S", 1800.0, minimum=0.1),
            max_connections=read.int("GEOLIBRE_ML_MAX_CONNECTIONS", 1000, minimum=8),
            header_timeout_s=read.float("GEOLIBRE_ML_HEADER_TIMEOUT_S", 10.0, minimum=0.1),
            body_idle_timeout_s=read.float("GEOLIBRE_ML_BODY_IDLE_TIMEOUT_S", 10.0, minimum=0.1),
            max_model_variants=read.int("GEOLIBRE_ML_MAX_MODEL_VARIANTS", 2),
            job_backends=parse_job_backends(read.list("GEOLIBRE_ML_JOB_BACKENDS")),
            # A CUDA_VISIBLE_DEVICES of the user's own already chose the GPU: kept, unless
            # GEOLIBRE_ML_GPU_BACKENDS asks for more.
            gpu_backends=read.cast(
                "GEOLIBRE_ML_GPU_BACKENDS",
                parse_gpu_backends,
                0 if env.get("CUDA_VISIBLE_DEVICES") is not None else None,
                what="all or a whole number >= 0",
            ),
            allowed_hosts=DEFAULT_ALLOWED_HOSTS + read.list("GEOLIBRE_ML_ALLOWED_HOSTS"),
            cors_origins=DEFAULT_CORS_ORIGINS + read.list("GEOLIBRE_ML_CORS_ORIGINS"),
            log_level=(read.str("GEOLIBRE_ML_LOG_LEVEL", "INFO") or "INFO").upper(),
            supervisor=supervisor,
            env=EnvSettings.from_environ(env),
        )


def parse_gpu_backends(raw: str) -> int | None:
    """``all`` -> None (every GPU), else a count >= 0 (ValueError otherwise)."""
    if raw.lower() == "all":
        return None
    count = int(raw)
    if count < 0:
        raise ValueError(raw)
    return count


def parse_job_backends(items: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    """``http://host:8000#4`` -> (``http://host:8000``, 4): the fragment, never sent, is
    how many tiles the server takes at once (1 if absent: samgeo-api is serial)."""
    parsed = []
    for item in items:
        url, _, count = item.partition("#")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"GEOLIBRE_ML_JOB_BACKENDS: {url[:60]!r} must start with http:// or https://.",
                hint="For example GEOLIBRE_ML_JOB_BACKENDS=http://gpu-box:8000,https://ray:8443#8",
            )
        if count and not (count.isdigit() and 1 <= int(count) <= 256):
            raise ConfigError(
                f"GEOLIBRE_ML_JOB_BACKENDS: the concurrency after '#' in {url[:60]!r} must be "
                "a whole number from 1 to 256."
            )
        parsed.append((url.rstrip("/"), int(count) if count else 1))
    return tuple(parsed)
