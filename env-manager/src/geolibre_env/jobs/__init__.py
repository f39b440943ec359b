"""Long jobs run in the model environment.

``tile_runner`` is a script run by path with the model environment's Python;
the sidecar imports it only for its path and its pure tiling helpers.
"""

from geolibre_env.jobs import tile_runner

__all__ = ["tile_runner"]
