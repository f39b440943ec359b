"""Tests of geolibre_env.report: the doctor and its diagnostics."""
