"""Stand-in SAM 3 weights for the stand-in samgeo-api: files in huggingface_hub's cache
layout under a GeoLibre home, recorded as the installer records what it fetched, so
the sidecar counts them as present (the demo page segments without a Hub)."""

from __future__ import annotations

import sys
from pathlib import Path

from geolibre_env.paths import Paths
from geolibre_env.weights.hub_cache import record_fetched

COMMIT = "0" * 39 + "1"
FILES = {"transformers": ("config.json", "model.safetensors"), "meta": ("config.json", "sam3.pt")}


def place_standin_weights(home: Path, repo: str = "facebook/sam3") -> None:
    """Both implementations' files (the meta one still needs the environment's vocabulary)."""
    paths = Paths.resolve(home)
    cache = paths.hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = cache / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    (cache / "refs").mkdir(exist_ok=True)
    (cache / "refs" / "main").write_text(COMMIT)
    for backend, names in FILES.items():
        for name in names:
            (snapshot / name).write_bytes(b"stand-in weights\n")
        record_fetched(paths.hf_home, backend, repo, COMMIT, dict.fromkeys(names, 17))


if __name__ == "__main__":
    place_standin_weights(Path(sys.argv[1]))
