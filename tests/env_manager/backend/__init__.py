"""Tests of geolibre_env.backend: the samgeo-api process and its supervision."""
