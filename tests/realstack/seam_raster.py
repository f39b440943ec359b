"""Write the seam test's rasters: dark seeded noise with bright objects painted on it.
Run with the MODEL environment's Python (numpy and rasterio live there)::

    <model-env>/bin/python tests/realstack/seam_raster.py '<json>'

The JSON: a list of {"path": p, "width": w, "height": h, "blobs": [...]}, a blob being
{"rect": [col0, row0, col1, row1], "value": v} (end exclusive) or
{"disc": [cx, cy, r], "value": v} (the pixels whose centre is within r of (cx, cy)).
Prints one line: for each raster, how many pixels each blob painted.
"""

from __future__ import annotations

import json
import sys

from job_raster import write_rgb

DARK = (20, 100)  # the background's range: always below the detector's threshold


def paint(width: int, height: int, blobs: list[dict]) -> tuple[object, list[int]]:
    import numpy as np

    pixels = np.random.default_rng(17).integers(*DARK, (3, height, width), dtype=np.uint8)
    rows, cols = np.mgrid[0:height, 0:width]
    counts = []
    for blob in blobs:
        if "rect" in blob:
            col0, row0, col1, row1 = blob["rect"]
            inside = (cols >= col0) & (cols < col1) & (rows >= row0) & (rows < row1)
        else:
            cx, cy, r = blob["disc"]
            inside = (cols + 0.5 - cx) ** 2 + (rows + 0.5 - cy) ** 2 <= r * r
        pixels[:, inside] = blob["value"]
        counts.append(int(inside.sum()))
    return pixels, counts


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = []
    for raster in json.loads(argv[0]):
        pixels, counts = paint(raster["width"], raster["height"], raster["blobs"])
        write_rgb(raster["path"], pixels)
        out.append(counts)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
