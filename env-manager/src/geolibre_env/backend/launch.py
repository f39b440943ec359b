"""How samgeo-api is launched: which command, and the environment it runs with.

Three sources, first found wins: ``GEOLIBRE_ML_SAMGEO_CMD``, the managed model
environment, a ``samgeo-api`` on PATH. The weights decide part of the managed
environment: with everything present samgeo-api runs with ``HF_HUB_OFFLINE=1``
(a request never waits on the network); a local checkpoint becomes
``SAM3_CHECKPOINT_PATH``.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence

from geolibre_env.backend.supervisor_state import LaunchSpec
from geolibre_env.errors import GeoLibreError, NotInstalledError
from geolibre_env.model_env import ActiveEnvironment, active_environment
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import load_spec
from geolibre_env.weights.availability import FOREIGN_SOURCES, MANAGED_SOURCE
from geolibre_env.weights.sam3 import active_weights_status, weights_variables

_PRIVATE_PREFIXES = ("GEOLIBRE_",)


def managed_launch_variables(settings: EnvSettings, active: ActiveEnvironment) -> dict[str, str]:
    """Variables for the managed environment's samgeo-api (never a token)."""
    env = {"HF_HOME": str(settings.paths.hf_home)}
    try:
        spec = load_spec(settings.spec_path)
        status = active_weights_status(settings, spec, active)
    except GeoLibreError:
        return env  # launch anyway: the backend's own error will say what is missing
    env.update(weights_variables(settings, spec, status))
    return env


def inherited_environment(settings: EnvSettings, *, managed: bool) -> dict[str, str]:
    """The model server's environment: ours minus our secrets, unbuffered output."""
    env = {
        key: value
        for key, value in settings.environ.items()
        if not key.startswith(_PRIVATE_PREFIXES)
    }
    if managed:
        # The managed environment keeps its token in its own HF_HOME.
        env.pop("HF_TOKEN", None)
        env.pop("HUGGING_FACE_HUB_TOKEN", None)
    env["PYTHONUNBUFFERED"] = "1"  # output as it happens: start-up progress shows in the log
    return env


def resolve_launch(settings: EnvSettings, *, samgeo_cmd: Sequence[str] | None = None) -> LaunchSpec:
    """The command and environment samgeo-api starts with; :class:`NotInstalledError`
    when there is none."""
    if samgeo_cmd:
        return LaunchSpec(
            tuple(samgeo_cmd), inherited_environment(settings, managed=False), FOREIGN_SOURCES[0]
        )
    active = active_environment(settings.paths)
    if active is not None:
        env = inherited_environment(settings, managed=True)
        env.update(managed_launch_variables(settings, active))
        return LaunchSpec((str(active.server),), env, MANAGED_SOURCE)
    on_path = shutil.which("samgeo-api", path=settings.environ.get("PATH"))
    if on_path:
        return LaunchSpec(
            (on_path,), inherited_environment(settings, managed=False), FOREIGN_SOURCES[1]
        )
    raise NotInstalledError(
        "The model backend is not installed.",
        hint="Install it from the app (Install model backend) or run `geolibre-ml install`.",
    )


def pin_to_gpu(launch: LaunchSpec, device: str | None) -> LaunchSpec:
    """``launch`` seeing only one NVIDIA GPU: ``device`` is its UUID (stable) or its
    nvidia-smi index; PCI bus order makes an index mean what nvidia-smi lists (CUDA's
    own default order puts the fastest first). None: unchanged."""
    if device is None:
        return launch
    env = {**launch.env, "CUDA_VISIBLE_DEVICES": device, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    return dataclasses.replace(launch, env=env)
