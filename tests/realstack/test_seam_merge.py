"""The seam merge (geolibre_env/tile_runner.py), run by the model environment's shapely
as the sidecar runs it: an object cut by a tile edge comes back as one polygon of its
true area, one seen in two overlapping tiles comes back once, and distinct objects stay
apart."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from geolibre_env.jobs import tile_runner

from tests.realstack.jobs_helpers import HERE, model_python
from tests.realstack.stack import RealStack

pytestmark = pytest.mark.realstack

PIXEL = 0.5  # metres; the tolerance is half a pixel


def merged(stack: RealStack, pieces: list[Any]) -> list[dict[str, Any]]:
    case = json.dumps({"tolerance": PIXEL / 2, "pieces": pieces})
    proc = subprocess.run(
        [str(model_python(stack.home)), str(HERE / "merge_check.py"), tile_runner.__file__, case],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def cut(box: tuple[float, float, float, float], seam_x: float, overlap: float) -> list[Any]:
    """The object as two tiles see it: tile 0 up to seam_x + overlap, tile 1 from seam_x."""
    x1, y1, x2, y2 = box
    return [[0, 0.9, [x1, y1, min(seam_x + overlap, x2), y2]], [1, 0.7, [seam_x, y1, x2, y2]]]


@pytest.mark.parametrize("overlap", [0.0, 8.0, 32.0])
def test_an_object_cut_by_a_seam_comes_back_as_one_polygon_of_its_true_area(
    real_stack: RealStack, overlap: float
) -> None:
    box = (100.0, 200.0, 180.0, 260.0)
    [feature] = merged(real_stack, cut(box, 140.0, overlap))
    assert feature["type"] == "Polygon"
    assert feature["area"] == pytest.approx(80 * 60, rel=0.01)
    assert feature["bounds"] == list(box)
    assert (feature["tiles"], feature["score"]) == ([0, 1], 0.9)


def test_an_object_at_a_corner_of_four_tiles_comes_back_once(real_stack: RealStack) -> None:
    # Tiles 0..3 around the corner (150, 150), each seeing its quarter plus an overlap of 10.
    pieces = [
        [0, 0.6, [120.0, 120.0, 160.0, 160.0]],
        [1, 0.8, [140.0, 120.0, 190.0, 160.0]],
        [2, 0.7, [120.0, 140.0, 160.0, 170.0]],
        [3, 0.5, [140.0, 140.0, 190.0, 170.0]],
    ]
    [feature] = merged(real_stack, pieces)
    assert feature["area"] == pytest.approx(70 * 50, rel=0.01)
    assert feature["tiles"] == [0, 1, 2, 3] and feature["score"] == 0.8


def test_an_object_inside_the_overlap_seen_by_both_tiles_is_not_duplicated(
    real_stack: RealStack,
) -> None:
    pieces = [[0, 0.9, [10.0, 10.0, 20.0, 20.0]], [1, 0.8, [10.0, 10.0, 20.0, 20.0]]]
    [feature] = merged(real_stack, pieces)
    assert feature["area"] == pytest.approx(100.0)


def test_distinct_objects_stay_apart(real_stack: RealStack) -> None:
    pieces = [
        # Two overlapping masks from ONE tile are two objects (the model said so).
        [0, 0.9, [0.0, 0.0, 10.0, 10.0]],
        [0, 0.8, [5.0, 5.0, 15.0, 15.0]],
        # Neighbours across a seam, a few pixels apart.
        [1, 0.7, [30.0, 0.0, 40.0, 10.0]],
        [2, 0.6, [42.0, 0.0, 50.0, 10.0]],
    ]
    features = merged(real_stack, pieces)
    assert len(features) == 4
    assert sorted(f["area"] for f in features) == pytest.approx([80.0, 100.0, 100.0, 100.0])
