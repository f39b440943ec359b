"""The sidecar's environment stays light: what the app ships (geolibre-bridge and
everything it pulls in, per uv.lock) is this short list and nothing else. torch,
numpy and samgeo belong in the separate model environment only."""

from __future__ import annotations

import tomllib
from pathlib import Path

LOCK = Path(__file__).resolve().parents[2] / "uv.lock"

SHIPPED = {
    # ours
    "geolibre-bridge", "geolibre-env", "geolibre-sidecar",
    # the server, the proxy and the supervisor
    "starlette", "uvicorn", "httptools", "h11", "httpx", "httpcore", "psutil", "platformdirs",
    # one sidecar per data folder
    "filelock",
    # theirs, one level down
    "anyio", "certifi", "click", "idna", "sniffio", "typing-extensions",
    # the model-environment installer: uv itself, and the OS trust store for TLS inspection
    "uv", "truststore",
}  # fmt: skip


def shipped_packages() -> set[str]:
    packages = {p["name"]: p for p in tomllib.loads(LOCK.read_text("utf-8"))["package"]}
    seen: set[str] = set()
    todo = ["geolibre-bridge"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [dep["name"] for dep in packages[name].get("dependencies", [])]
    return seen


def test_the_app_ships_only_the_light_packages_it_needs():
    shipped = shipped_packages()
    assert not shipped & {"torch", "numpy", "segment-geospatial", "torchvision"}
    assert shipped - SHIPPED == set(), "a new dependency of the sidecar: is it light?"
