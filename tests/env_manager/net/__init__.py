"""Tests of geolibre_env.net: proxies, custom CAs and hostile networks."""
