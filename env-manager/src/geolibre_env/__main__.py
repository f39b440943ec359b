"""``python -m geolibre_env`` is ``geolibre-ml``."""

from geolibre_env.cli import main

main()
