"""Tests of geolibre_env.install: planning, provisioning, bundles, source checks."""
