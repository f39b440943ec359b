"""Long jobs run in the model environment.

``tile_runner`` (cut, merge) and ``tile_worker`` (the long-lived loop the sidecar
supervises, which runs them) are scripts run by path with the model environment's
Python; the sidecar imports ``tile_runner`` only for its folder and its pure tiling
helpers.
"""

from geolibre_env.jobs import tile_runner

__all__ = ["tile_runner"]
