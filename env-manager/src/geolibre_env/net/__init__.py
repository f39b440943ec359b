"""Reaching the network: which certificates are trusted and the one HTTP client.

Proxy settings live in :mod:`geolibre_env.proxies`, next to the settings that read them.
"""

from geolibre_env.net.http_client import make_client, transport_failure
from geolibre_env.net.trust import ssl_context

__all__ = ["make_client", "ssl_context", "transport_failure"]
