"""Write an RGB GeoTIFF of any size for the tiled-job tests, and print its bounds. Run
with the MODEL environment's Python (rasterio lives there):

    <model-env>/bin/python tests/realstack/job_raster.py <out.tif> <width> <height> [nodata_cols]

Pixels are seeded noise (every tile differs, so the stand-in answers each one
differently); with ``nodata_cols``, that many columns on the left are nodata (0), so
tiles wholly inside them are skipped.
"""

from __future__ import annotations

import json
import sys
from typing import Any

CRS = "EPSG:32611"
ORIGIN = (500_000.0, 3_760_000.0)
PIXEL_M = 0.5


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    import numpy as np

    width, height = int(argv[1]), int(argv[2])
    nodata_cols = int(argv[3]) if len(argv) == 4 else 0
    pixels = np.random.default_rng(11).integers(1, 256, (3, height, width), dtype=np.uint8)
    pixels[:, :, :nodata_cols] = 0
    print(json.dumps({"epsg": 32611, "bounds": write_rgb(argv[0], pixels)}))
    return 0


def write_rgb(path: str, pixels: Any) -> list[float]:
    """Write a (3, height, width) uint8 array as the GeoTIFF (0 is nodata); its bounds."""
    import rasterio
    from rasterio.transform import from_origin

    _, height, width = pixels.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 3,
               "dtype": "uint8", "crs": CRS, "nodata": 0,
               "transform": from_origin(*ORIGIN, PIXEL_M, PIXEL_M)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(pixels)
        return list(dataset.bounds)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
