"""The seam test's known objects, placed on a job's tile grid, and the check of a merged
result against them. Standard library only: the test process has no shapely.

Objects sit where the grid cuts them: across the first vertical seam, across the first
horizontal seam, on the corner where four tiles meet; wholly inside one tile; a pixel
apart on either side of the seam; and, with an overlap, wholly inside the overlap (two
tiles see all of it) and across an overlap's edge (whole in some tiles, cut in others).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from geolibre_env.jobs.tile_runner import starts, tile_grid

from tests.realstack.job_raster import ORIGIN, PIXEL_M

Window = tuple[int, int, int, int]
AREA_TOLERANCE = 0.01


@dataclass(frozen=True)
class Blob:
    """A bright object: a pixel rectangle ``rect`` (end exclusive) or a disc ``disc``
    (cx, cy, r; the pixels whose centre lies within r), in pixels of the raster."""

    name: str
    value: int  # brightness: the detector's score is value / 255
    cut: bool  # placed across a seam: no tile holds it whole
    rect: tuple[int, int, int, int] | None = None
    disc: tuple[float, float, float] | None = None

    def spec(self) -> dict[str, Any]:
        shape = {"rect": list(self.rect)} if self.rect else {"disc": list(self.disc or ())}
        return {**shape, "value": self.value}

    def pixels(self) -> Iterator[tuple[int, int]]:
        if self.rect:
            col0, row0, col1, row1 = self.rect
            yield from ((c, r) for r in range(row0, row1) for c in range(col0, col1))
            return
        assert self.disc is not None
        cx, cy, radius = self.disc
        span = range(math.floor(cy - radius), math.ceil(cy + radius) + 1)
        for r in span:
            for c in range(math.floor(cx - radius), math.ceil(cx + radius) + 1):
                if (c + 0.5 - cx) ** 2 + (r + 0.5 - cy) ** 2 <= radius**2:
                    yield c, r

    def true_area(self) -> float:
        """The object's own area in square metres (a disc's is pi r^2, not its pixels')."""
        if self.rect:
            col0, row0, col1, row1 = self.rect
            return (col1 - col0) * (row1 - row0) * PIXEL_M**2
        assert self.disc is not None
        return math.pi * self.disc[2] ** 2 * PIXEL_M**2


@dataclass(frozen=True)
class Expected:
    """What the merged feature of one blob must be."""

    blob: Blob
    bounds: tuple[float, float, float, float]  # in the raster's CRS
    tiles: list[int]  # those that see some of it
    whole: list[int]  # those that see all of it
    pixel_count: int


def layout(size: int, tile: int, overlap: int) -> list[Blob]:
    """The objects for a ``size`` x ``size`` raster cut at ``tile`` with ``overlap``."""
    offsets = starts(size, tile, overlap)
    assert len(offsets) >= 2, "the raster must be larger than a tile"
    seam_from, seam_to = offsets[1], tile  # the first overlap band (empty with no overlap)
    mid, half = (seam_from + seam_to) / 2, (seam_to - seam_from) / 2
    blobs = [
        Blob("vertical seam", 200, True, rect=(seam_from - 40, 30, seam_to + 40, 90)),
        Blob("horizontal seam", 210, True, rect=(30, seam_from - 40, 90, seam_to + 40)),
        Blob("four-tile corner", 220, True, disc=(mid, mid, half + 48)),
        Blob("inside one tile", 230, False, rect=(110, 110, 170, 170)),
        # Two objects a pixel apart on either side of the seam: they must stay two.
        Blob("left of the seam", 180, False, rect=(seam_to - 40, 680, seam_to - 1, 720)),
        Blob("right of the seam", 190, False, rect=(seam_to, 680, seam_to + 40, 720)),
    ]
    if seam_to - seam_from > 8:
        inside = (seam_from + 4, 120, seam_to - 4, 150)
        blobs.append(Blob("inside the overlap", 240, False, rect=inside))
        # Whole in the tiles on the left of the seam, cut by the left edge of those beyond.
        across = (seam_from - 20, 600, seam_to - 4, 640)
        blobs.append(Blob("across an overlap's edge", 250, False, rect=across))
    return blobs


def expected(blobs: Sequence[Blob], windows: Sequence[Window]) -> list[Expected]:
    out = []
    for blob in blobs:
        pixels = list(blob.pixels())
        cols, rows = zip(*pixels, strict=True)
        seen = [
            [col <= c < col + width and row <= r < row + height for c, r in pixels]
            for col, row, width, height in windows
        ]
        tiles = [index for index, inside in enumerate(seen) if any(inside)]
        whole = [index for index, inside in enumerate(seen) if all(inside)]
        x0, y0 = ORIGIN
        bounds = (
            x0 + min(cols) * PIXEL_M,
            y0 - (max(rows) + 1) * PIXEL_M,
            x0 + (max(cols) + 1) * PIXEL_M,
            y0 - min(rows) * PIXEL_M,
        )
        out.append(Expected(blob, bounds, tiles, whole, len(cols)))
    return out


def job_windows(size: int, tile: int, overlap: int) -> list[Window]:
    return tile_grid(size, size, tile, overlap)


def ring_area(ring: Sequence[Sequence[float]]) -> float:
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in pairwise(ring))) / 2


def polygons(geometry: dict[str, Any]) -> list[Any]:
    if geometry["type"] == "Polygon":
        return [geometry["coordinates"]]
    assert geometry["type"] == "MultiPolygon", geometry["type"]
    return list(geometry["coordinates"])


def area(geometry: dict[str, Any]) -> float:
    return sum(
        ring_area(rings[0]) - sum(ring_area(hole) for hole in rings[1:])
        for rings in polygons(geometry)
    )


def bounds(geometry: dict[str, Any]) -> tuple[float, float, float, float]:
    points = [p for rings in polygons(geometry) for ring in rings for p in ring]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def overlaps(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def problems(collection: dict[str, Any], wanted: Sequence[Expected], epsg: int) -> list[str]:
    """Everything in a merged result that is not one polygon per object of its true area,
    in the raster's CRS, keeping its score and its tiles (empty: all is well)."""
    found = []
    crs = (collection.get("crs") or {}).get("properties", {}).get("name")
    if crs != f"urn:ogc:def:crs:EPSG::{epsg}":
        found.append(f"the result's CRS is {crs}, not EPSG:{epsg}")
    features = collection["features"]
    if len(features) != len(wanted):
        found.append(f"{len(features)} features for {len(wanted)} objects")
    for want in wanted:
        name = want.blob.name
        mine = [f for f in features if overlaps(bounds(f["geometry"]), want.bounds)]
        if len(mine) != 1:
            found.append(f"{name}: {len(mine)} features where there should be one")
            continue
        feature = mine[0]
        geometry, props = feature["geometry"], feature["properties"]
        if geometry["type"] != "Polygon":
            found.append(f"{name}: a {geometry['type']}, not one polygon")
        error = area(geometry) / want.blob.true_area() - 1
        if abs(error) > AREA_TOLERANCE:
            found.append(f"{name}: area off by {error:+.2%}")
        if bounds(geometry) != want.bounds:
            found.append(f"{name}: bounds {bounds(geometry)}, not {want.bounds}")
        if props.get("tiles") != want.tiles:
            found.append(f"{name}: tiles {props.get('tiles')}, not {want.tiles}")
        score = props.get("score")
        if not isinstance(score, float) or abs(score - want.blob.value / 255) > 1e-3:
            found.append(f"{name}: score {score}, not {want.blob.value / 255:.4f}")
    return found


def area_errors(collection: dict[str, Any], wanted: Sequence[Expected]) -> dict[str, float]:
    """Each object's merged area against its true area (a fraction), for the record."""
    return {
        want.blob.name: area(feature["geometry"]) / want.blob.true_area() - 1
        for want in wanted
        for feature in collection["features"]
        if overlaps(bounds(feature["geometry"]), want.bounds)
    }
