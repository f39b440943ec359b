"""How the managed samgeo-api is launched: its command and the variables it needs.

The weights decide part of the environment: with everything present the
backend runs with ``HF_HUB_OFFLINE=1`` (a request never waits on the
network); a local checkpoint becomes ``SAM3_CHECKPOINT_PATH``.
"""

from __future__ import annotations

from geolibre_env.errors import GeoLibreError
from geolibre_env.model_env import ActiveEnvironment
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import load_spec
from geolibre_env.weights.sam3 import active_weights_status, weights_variables


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
