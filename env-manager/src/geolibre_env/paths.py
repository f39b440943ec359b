"""Every folder and file the project owns, computed in one place.

Data, state, logs and caches live under platformdirs' user folders for the app
name ``geolibre-ml``; ``GEOLIBRE_ML_HOME`` moves all of them under one folder
(portable installs, tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

APP_NAME = "geolibre-ml"


@dataclass(frozen=True)
class Paths:
    """The four roots and everything derived from them."""

    data: Path
    state: Path
    logs: Path
    cache: Path

    @classmethod
    def resolve(cls, home: Path | None = None) -> Paths:
        """Paths under ``home`` when given, else platformdirs' user folders."""
        if home is not None:
            home = home.expanduser().absolute()
            return cls(home / "data", home / "state", home / "logs", home / "cache")
        import platformdirs

        dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
        return cls(
            Path(dirs.user_data_dir),
            Path(dirs.user_state_dir),
            Path(dirs.user_log_dir),
            Path(dirs.user_cache_dir),
        )

    # The model environment -------------------------------------------------
    @property
    def model_root(self) -> Path:
        return self.data / "model-env"

    @property
    def envs_dir(self) -> Path:
        """Each build gets its own folder here; only the active one is used."""
        return self.model_root / "envs"

    @property
    def active_pointer(self) -> Path:
        """JSON naming the verified environment in use; replaced atomically."""
        return self.model_root / "active.json"

    @property
    def install_lock(self) -> Path:
        return self.model_root / "install.lock"

    @property
    def hf_home(self) -> Path:
        """The model environment's own huggingface_hub home (weights, token)."""
        return self.data / "hf-home"

    @property
    def checkpoints_dir(self) -> Path:
        return self.data / "checkpoints"

    @property
    def uv_cache(self) -> Path:
        return self.cache / "uv"

    # The sidecar and the backend it supervises -----------------------------
    @property
    def backend_state(self) -> Path:
        """pid, start time and command line of the samgeo-api we started."""
        return self.state / "backend.json"

    @property
    def last_install(self) -> Path:
        """The outcome of the last install (for the doctor and the app)."""
        return self.state / "last-install.json"

    @property
    def supervisor_status(self) -> Path:
        """The supervisor's last state, for `geolibre-ml status` in another process."""
        return self.state / "supervisor.json"

    @property
    def sidecar_log(self) -> Path:
        return self.logs / "sidecar.log"

    @property
    def backend_log(self) -> Path:
        return self.logs / "samgeo-api.log"

    @property
    def install_log(self) -> Path:
        return self.logs / "install.log"

    def ensure(self) -> None:
        """Create the roots (idempotent)."""
        for folder in (self.data, self.state, self.logs, self.cache):
            folder.mkdir(parents=True, exist_ok=True)
