"""Run the tile runner's seam merge on boxes given as JSON, and print what came out.
Run with the MODEL environment's Python (shapely lives there)::

    <model-env>/bin/python tests/realstack/merge_check.py <tile_runner.py> '<json>'

The JSON: {"tolerance": t, "pieces": [[tile, score, [x1, y1, x2, y2]], ...]}. Prints
one line: [{"area": a, "bounds": [...], "tiles": [...], "score": s, "type": ...}, ...].
"""

from __future__ import annotations

import importlib.util
import json
import sys


def main(argv: list[str]) -> int:
    spec = importlib.util.spec_from_file_location("tile_runner", argv[0])
    assert spec is not None and spec.loader is not None
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    from shapely.geometry import box, shape

    case = json.loads(argv[1])
    found = [(box(*coords), score, tile) for tile, score, coords in case["pieces"]]
    merged = runner.merge_features(found, tolerance=case["tolerance"])
    out = []
    for feature in merged:
        geometry = shape(feature["geometry"])
        out.append(
            {
                "area": geometry.area,
                "bounds": list(geometry.bounds),
                "type": geometry.geom_type,
                **feature["properties"],
            }
        )
    out.sort(key=lambda item: item["bounds"])
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
