"""Tests of geolibre_env.weights: the SAM 3 weights on the Hub and their availability."""
