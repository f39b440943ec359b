"""Write a big RGB GeoTIFF of about a given file size, as orthophotos are stored: tiled
(512 px blocks), DEFLATE with the horizontal predictor. Run with the MODEL
environment's Python (rasterio, numpy)::

    <model-env>/bin/python tests/benchmarks/big_raster.py <out.tif> <megabytes>

Pixels are smooth ramps with noise (so the compression is partial, as on real
imagery), written one strip of blocks at a time: this script's memory stays flat
too. Prints ``{"width", "height", "bytes"}``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

BLOCK = 512
# Bytes a pixel takes on disk with these pixels and this compression (3 bands):
# measured, about 2.15 of the 3 raw bytes survive DEFLATE on this noise.
BYTES_PER_PIXEL = 2.15


def strip(rng: Any, row: int, width: int, height: int) -> Any:
    """Rows ``row`` to ``row + height``: ramps along both axes plus 5 bits of noise,
    in uint8 arithmetic (fast enough for gigabytes)."""
    import numpy as np

    cols = np.arange(width, dtype=np.float32)
    rows = np.arange(row, row + height, dtype=np.float32)
    bands = []
    for period, offset in ((700.0, 40), (1300.0, 60), (2100.0, 30)):
        across = (offset + 40 * (1 + np.sin(cols / period))).astype(np.uint8)
        down = (40 * (1 + np.cos(rows / period))).astype(np.uint8)  # sum <= 251: no wrap
        noise = rng.integers(1, 32, (height, width), dtype=np.uint8)
        bands.append(across[None, :] + down[:, None] + noise)
    return np.stack(bands)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    path, megabytes = argv[0], float(argv[1])
    side = max(1, round(math.sqrt(megabytes * 1e6 / BYTES_PER_PIXEL) / BLOCK)) * BLOCK
    profile = {
        "driver": "GTiff", "width": side, "height": side, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32611", "nodata": 0, "transform": from_origin(500_000, 3_760_000, 0.3, 0.3),
        "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
        "predictor": 2, "BIGTIFF": "IF_SAFER",
    }  # fmt: skip
    rng = np.random.default_rng(17)
    with rasterio.Env(GDAL_CACHEMAX=64), rasterio.open(path, "w", **profile) as out:
        for row in range(0, side, BLOCK):
            out.write(strip(rng, row, side, BLOCK), window=Window(0, row, side, BLOCK))
    print(json.dumps({"width": side, "height": side, "bytes": os.path.getsize(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
