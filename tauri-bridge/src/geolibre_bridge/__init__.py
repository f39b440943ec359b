"""The launcher and client glue the GeoLibre desktop app uses."""

__version__ = "0.1.0"
