"""Seam merge through the whole real stack: POST /ml/jobs on the real sidecar, the tile
runner cutting and merging in the model environment, and the real samgeo-api
segmenting every tile, its SAM 3 forward pass swapped for a deterministic detector of
bright regions (``bright_detector/sitecustomize.py``, on samgeo-api's PYTHONPATH
through the sidecar's environment, which samgeo-api inherits).

Known objects straddle a vertical seam, a horizontal seam and a four-tile corner, one
lies inside a tile and, with an overlap, one inside the overlap: each must come back
as exactly one polygon within 1 % of its true area, in the raster's CRS, with its
score and tiles, at two tile sizes and two overlaps. The checker itself is shown to
catch a merge left undone, an overlap duplicate, a wrong area, tiles, score or CRS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.sidecar import Sidecar
from tests.realstack.job_raster import ORIGIN, PIXEL_M
from tests.realstack.jobs_helpers import HERE, read_events, submit
from tests.realstack.seam_objects import (
    Expected,
    area_errors,
    expected,
    job_windows,
    layout,
    problems,
)
from tests.realstack.stack import RealStack, running_sidecar

DETECTOR = HERE / "bright_detector"
EPSG = 32611
SIZE = 768  # pixels a side; tiles of 256 make 3 x 3 (4 x 4 with an overlap), of 384 2 x 2
CASES = [(256, 0), (256, 32), (384, 0), (384, 32)]
JOB_TIMEOUT_S = 300.0
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def bright_sidecar(real_stack: RealStack, tiny_weights: dict[str, Any]) -> Iterator[Sidecar]:
    with running_sidecar(real_stack, env={"PYTHONPATH": str(DETECTOR)}) as sidecar:
        yield sidecar


@pytest.fixture(scope="module")
def rasters(
    real_stack: RealStack, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[int, int], tuple[bytes, list[Expected]]]:
    """One raster per case, its objects placed on that case's seams."""
    folder = tmp_path_factory.mktemp("seams")
    specs = [
        {
            "path": str(folder / f"seams-{tile}-{overlap}.tif"),
            "width": SIZE,
            "height": SIZE,
            "blobs": [blob.spec() for blob in layout(SIZE, tile, overlap)],
        }
        for tile, overlap in CASES
    ]
    painted = real_stack.model_python("seam_raster.py", json.dumps(specs))
    made = {}
    for (tile, overlap), spec, counts in zip(CASES, specs, painted, strict=True):
        wanted = expected(layout(SIZE, tile, overlap), job_windows(SIZE, tile, overlap))
        # The painter and the checker agree on every object's pixels.
        assert counts == [w.pixel_count for w in wanted]
        made[(tile, overlap)] = (Path(spec["path"]).read_bytes(), wanted)
    return made


@pytest.mark.realstack
@pytest.mark.parametrize(("tile", "overlap"), CASES)
def test_objects_across_seams_come_back_as_one_polygon_each_of_their_true_area(
    bright_sidecar: Sidecar,
    rasters: dict[tuple[int, int], tuple[bytes, list[Expected]]],
    tile: int,
    overlap: int,
) -> None:
    raster, wanted = rasters[(tile, overlap)]
    # The layout exercises the merge: no tile holds a seam object whole; with an overlap,
    # two tiles hold one object whole, and one object is whole in some tiles, cut in others.
    assert all(bool(want.whole) != want.blob.cut for want in wanted)
    if overlap:
        assert any(len(want.whole) == len(want.tiles) == 2 for want in wanted)
        assert any(0 < len(want.whole) < len(want.tiles) for want in wanted)
    started = time.monotonic()
    with bright_sidecar.client() as client:
        answer = submit(client, raster, tile_size=tile, overlap=overlap)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    events = read_events(bright_sidecar, job_id, timeout_s=JOB_TIMEOUT_S)
    assert events[-1]["state"] == "succeeded", events[-3:]
    with bright_sidecar.client() as client:
        result = client.get(f"/ml/jobs/{job_id}/result")
    assert result.status_code == 200, result.text
    collection = result.json()
    assert problems(collection, wanted, EPSG) == []

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"seam-merge-real-{tile}-{overlap}.json").write_text(
        json.dumps(
            {
                "tiles": len(job_windows(SIZE, tile, overlap)),
                "job_s": round(time.monotonic() - started, 2),
                "area_errors": area_errors(collection, wanted),
            },
            indent=1,
        )
    )


# The checker catches what a broken merge returns (fast: no stack, rectangles only).
CHECKED = (256, 32)
WANTED = [w for w in expected(layout(SIZE, *CHECKED), job_windows(SIZE, *CHECKED)) if w.blob.rect]


def rectangle(bounds: tuple[float, float, float, float], value: int, tiles: list[int]) -> dict:
    x0, y0, x1, y1 = bounds
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {
        "type": "Feature",
        "properties": {"score": round(value / 255, 4), "tiles": tiles},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


def collection(features: list[dict]) -> dict[str, Any]:
    crs = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{EPSG}"}}
    return {"type": "FeatureCollection", "crs": crs, "features": features}


def merged_well() -> list[dict]:
    return [rectangle(w.bounds, w.blob.value, w.tiles) for w in WANTED]


def left_unmerged() -> list[dict]:
    """What a merge that does nothing returns: each tile's piece of each object."""
    windows = job_windows(SIZE, *CHECKED)
    pixel = (ORIGIN[0], ORIGIN[1], PIXEL_M)
    pieces = []
    for want in WANTED:
        for index in want.tiles:
            clipped = clip(want.bounds, window_bounds(windows[index], pixel))
            pieces.append(rectangle(clipped, want.blob.value, [index]))
    return pieces


def window_bounds(window: tuple[int, int, int, int], pixel: tuple[float, float, float]) -> tuple:
    col, row, width, height = window
    x0, y0, size = pixel
    return (x0 + col * size, y0 - (row + height) * size, x0 + (col + width) * size, y0 - row * size)


def clip(a: tuple, b: tuple) -> tuple[float, float, float, float]:
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def grown(features: list[dict]) -> list[dict]:
    """The first object 2 % too wide."""
    first = WANTED[0]
    x0, y0, x1, y1 = first.bounds
    wider = (x0, y0, x1 + (x1 - x0) * 0.02, y1)
    return [rectangle(wider, first.blob.value, first.tiles), *features[1:]]


def relabelled(**props: Any) -> list[dict]:
    """A good merge whose features' properties are ``props`` instead."""
    return [{**feature, "properties": props} for feature in merged_well()]


BROKEN = {
    "merge left undone": (lambda: collection(left_unmerged()), "features where there should"),
    "overlap duplicate": (
        lambda: collection([*merged_well(), merged_well()[named("inside the overlap")]]),
        "inside the overlap: 2 features",
    ),
    "neighbours joined": (lambda: collection(neighbours_joined()), "6 features for 7 objects"),
    "area": (lambda: collection(grown(merged_well())), "vertical seam: area off by +2.00%"),
    "crs": (lambda: {**collection(merged_well()), "crs": None}, "not EPSG:32611"),
    "tiles": (
        lambda: collection(relabelled(score=200 / 255, tiles=[0])),
        "horizontal seam: tiles [0], not [0, 4]",
    ),
    "score": (lambda: collection(relabelled(tiles=[0, 1])), "vertical seam: score None"),
}


def neighbours_joined() -> list[dict]:
    """The two objects a pixel apart across the seam merged into one."""
    left, right = named("left of the seam"), named("right of the seam")
    x0, y0, _, _ = WANTED[left].bounds
    _, _, x1, y1 = WANTED[right].bounds
    tiles = sorted({*WANTED[left].tiles, *WANTED[right].tiles})
    joined = rectangle((x0, y0, x1, y1), WANTED[right].blob.value, tiles)
    return [f for i, f in enumerate(merged_well()) if i not in (left, right)] + [joined]


def named(name: str) -> int:
    return [want.blob.name for want in WANTED].index(name)


def test_the_checker_passes_a_good_merge() -> None:
    assert problems(collection(merged_well()), WANTED, EPSG) == []


@pytest.mark.parametrize("case", list(BROKEN))
def test_the_checker_catches_a_broken_merge(case: str) -> None:
    broken, caught = BROKEN[case]
    found = problems(broken(), WANTED, EPSG)
    assert any(caught in problem for problem in found), found
