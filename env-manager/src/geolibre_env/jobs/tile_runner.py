"""Cut a raster into overlapping georeferenced tiles, and merge per-tile GeoJSON across
the seams. Run as a script with the MODEL environment's Python, which has rasterio,
shapely and numpy (the sidecar's environment has none of them)::

    python tile_runner.py cut <raster> <job-folder> <tile-size> <overlap>
    python tile_runner.py merge <job-folder>

``cut`` writes ``tiles/NNNNN.tif`` (each with its own transform, every band and the
source's data type; tiles with no valid pixel are skipped) and then ``plan.json``,
last, so a plan on disk always names tiles that exist. Each tile is renamed into
place whole, so a cut run again after a crash keeps the tiles already written.
Windows are read one at a time: memory stays flat whatever the raster's size. ``merge`` reads
``results/NNNNN.json`` (samgeo-api's GeoJSON for each tile, in the raster's CRS) and
writes ``result.geojson``: polygons from different tiles that overlap or touch are
one object cut by a seam or seen twice in an overlap, so they become one feature
with the best score and the tiles it came from.

Progress and errors are JSON lines on stdout. Standard library at import time:
the sidecar imports :func:`tile_grid` without rasterio.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

Window = tuple[int, int, int, int]  # column, row, width, height in pixels
GDAL_CACHE_MB = 64


def starts(length: int, tile: int, overlap: int) -> list[int]:
    """Offsets of tiles along one axis: a step of ``tile - overlap``, and a last tile
    flush with the edge (it overlaps its neighbour more) so none is a sliver."""
    if length <= tile:
        return [0]
    step = tile - overlap
    offsets = list(range(0, length - tile, step))
    offsets.append(length - tile)
    return offsets


def tile_grid(width: int, height: int, tile: int, overlap: int) -> list[Window]:
    """The windows covering a ``width`` x ``height`` raster, row by row."""
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError("tile size must be positive and the overlap smaller than it")
    if width <= 0 or height <= 0:
        raise ValueError("the raster has no pixels")
    return [
        (col, row, min(tile, width), min(tile, height))
        for row in starts(height, tile, overlap)
        for col in starts(width, tile, overlap)
    ]


def _say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def cut(raster: Path, folder: Path, tile: int, overlap: int) -> int:
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.windows import Window as RWindow

    try:
        src = rasterio.open(raster)
    except (RasterioError, OSError) as exc:
        _say(event="error", detail=f"The raster could not be read: {str(exc)[:300]}")
        return 2
    with src:
        if src.crs is None:
            _say(event="error", detail="The raster has no coordinate reference system.")
            return 2
        tiles_dir = folder / "tiles"
        tiles_dir.mkdir(parents=True, exist_ok=True)
        windows = tile_grid(src.width, src.height, tile, overlap)
        profile = {
            "driver": "GTiff",
            "count": src.count,
            "dtype": src.dtypes[0],
            "crs": src.crs,
            "nodata": src.nodata,
        }
        kept: list[dict[str, Any]] = []
        for index, (col, row, width, height) in enumerate(windows):
            window = RWindow(col, row, width, height)
            name = f"{index:05d}.tif"
            if not (tiles_dir / name).exists():  # else cut before a crash: kept as it is
                try:
                    data = src.read(window=window)
                    mask = src.dataset_mask(window=window)
                except (RasterioError, OSError) as exc:
                    _say(event="error", detail=f"The raster could not be read: {str(exc)[:300]}")
                    return 2
                if not mask.any():
                    _say(event="cut", done=index + 1, total=len(windows))
                    continue
                part = tiles_dir / (name + ".part")
                transform = src.window_transform(window)
                with rasterio.open(
                    part, "w", width=width, height=height, transform=transform, **profile
                ) as out:
                    out.write(data)
                os.replace(part, tiles_dir / name)
            kept.append(
                {
                    "index": index,
                    "col": col,
                    "row": row,
                    "width": width,
                    "height": height,
                    "file": name,
                }
            )
            _say(event="cut", done=index + 1, total=len(windows))
        epsg = src.crs.to_epsg()
        plan = {
            "width": src.width,
            "height": src.height,
            "epsg": epsg,
            "crs_wkt": src.crs.to_wkt(),
            "pixel_size": abs(src.transform.a),
            "tile_size": tile,
            "overlap": overlap,
            "tiles": kept,
            "skipped": len(windows) - len(kept),
        }
    _write_json_atomic(folder / "plan.json", plan)
    _say(event="plan", tiles=len(kept), skipped=plan["skipped"])
    return 0


def _load_features(folder: Path, plan: dict[str, Any]) -> list[tuple[Any, float | None, int]]:
    from shapely.geometry import shape

    found = []
    for tile in plan["tiles"]:
        path = folder / "results" / f"{tile['index']:05d}.json"
        if not path.exists():
            continue
        collection = json.loads(path.read_text(encoding="utf-8"))
        for feature in collection.get("features") or []:
            geometry = feature.get("geometry")
            if not geometry:
                continue
            shaped = shape(geometry)
            if not shaped.is_valid:
                shaped = shaped.buffer(0)
            if shaped.is_empty or shaped.area <= 0:
                continue
            score = (feature.get("properties") or {}).get("score")
            found.append((shaped, score if isinstance(score, int | float) else None, tile["index"]))
    return found


def merge_features(
    found: list[tuple[Any, float | None, int]], tolerance: float
) -> list[dict[str, Any]]:
    """Join polygons from different tiles that overlap or touch (within ``tolerance``,
    half a pixel) into one feature each; polygons from one tile stay apart."""
    from shapely import STRtree, unary_union
    from shapely.geometry import mapping

    geoms = [g for g, _, _ in found]
    parent = list(range(len(geoms)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    tree = STRtree(geoms)
    for i, geom in enumerate(geoms):
        grown = geom.buffer(tolerance)
        for j in tree.query(grown, predicate="intersects"):
            j = int(j)
            if j > i and found[j][2] != found[i][2]:
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(geoms)):
        groups.setdefault(root(i), []).append(i)
    features = []
    for members in groups.values():
        union = unary_union([geoms[i] for i in members])
        scores = [found[i][1] for i in members if found[i][1] is not None]
        features.append(
            {
                "type": "Feature",
                "properties": {
                    "score": max(scores) if scores else None,
                    "tiles": sorted({found[i][2] for i in members}),
                },
                "geometry": mapping(union),
            }
        )
    return features


def merge(folder: Path) -> int:
    plan = json.loads((folder / "plan.json").read_text(encoding="utf-8"))
    found = _load_features(folder, plan)
    features = merge_features(found, tolerance=plan["pixel_size"] / 2)
    collection: dict[str, Any] = {"type": "FeatureCollection", "name": "merged"}
    if plan.get("epsg"):
        urn = f"urn:ogc:def:crs:EPSG::{plan['epsg']}"
        collection["crs"] = {"type": "name", "properties": {"name": urn}}
    collection["features"] = features
    _write_json_atomic(folder / "result.geojson", collection)
    _say(event="merged", features=len(features), pieces=len(found))
    return 0


def main(argv: list[str]) -> int:
    try:
        return _main(argv)
    except ImportError as exc:
        _say(
            event="error",
            detail=f"The model environment lacks {exc.name or 'a raster library'}, which cuts "
            "and merges tiles; reinstall it (geolibre-ml install --force).",
        )
        return 2


def _main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[0] == "cut":
        import rasterio

        # GDAL's block cache defaults to 5 % of RAM and fills as windows are read: a
        # small fixed cache keeps memory flat whatever the raster's size.
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            return cut(Path(argv[1]), Path(argv[2]), int(argv[3]), int(argv[4]))
    if len(argv) == 2 and argv[0] == "merge":
        return merge(Path(argv[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
