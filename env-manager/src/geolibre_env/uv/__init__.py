"""Running uv: found, version-checked, with a clean environment, its progress read."""

from geolibre_env.uv.runner import UvTool, find_uv, stream_uv

__all__ = ["UvTool", "find_uv", "stream_uv"]
