"""Write a small RGB GeoTIFF in a projected CRS with rasterio, and print its CRS and
bounds as rasterio reads them back. Run with the MODEL environment's Python
(rasterio lives there, not in the project's environment):

    <model-env>/bin/python tests/realstack/geotiff.py <output.tif>
"""

from __future__ import annotations

import json
import sys

SIZE = 256  # pixels a side
CRS = "EPSG:32611"  # UTM zone 11N: metres, not degrees
ORIGIN = (500_000.0, 3_760_000.0)  # upper-left corner, near Los Angeles
PIXEL_M = 0.5
SEED = 7


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    pixels = np.random.default_rng(SEED).integers(0, 256, (3, SIZE, SIZE), dtype=np.uint8)
    profile = {
        "driver": "GTiff",
        "width": SIZE,
        "height": SIZE,
        "count": 3,
        "dtype": "uint8",
        "crs": CRS,
        "transform": from_origin(*ORIGIN, PIXEL_M, PIXEL_M),
    }
    with rasterio.open(argv[0], "w", **profile) as dataset:
        dataset.write(pixels)
    with rasterio.open(argv[0]) as dataset:
        epsg, bounds = dataset.crs.to_epsg(), list(dataset.bounds)
    print(json.dumps({"epsg": epsg, "bounds": bounds}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
