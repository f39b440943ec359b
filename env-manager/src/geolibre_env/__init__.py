"""GeoLibre model-environment manager."""

__version__ = "0.1.0"
