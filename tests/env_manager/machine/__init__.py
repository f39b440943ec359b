"""Tests of geolibre_env.machine: GPU, driver and torch build detection."""
