"""Tests of geolibre_env.uv: running uv and reading its progress."""
