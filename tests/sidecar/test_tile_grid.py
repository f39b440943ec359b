"""The tile grid (geolibre_env/tile_runner.py, standard library) and the job backends
setting."""

from __future__ import annotations

import itertools

import pytest
from geolibre_env.errors import ConfigError
from geolibre_env.jobs.tile_runner import tile_grid
from geolibre_sidecar.settings import SidecarSettings


def covered(width: int, height: int, tile: int, overlap: int) -> set[tuple[int, int]]:
    return {
        (x, y)
        for col, row, w, h in tile_grid(width, height, tile, overlap)
        for x in range(col, col + w)
        for y in range(row, row + h)
    }


@pytest.mark.parametrize(
    ("width", "height", "tile", "overlap"),
    [(600, 500, 256, 32), (1008, 1008, 1008, 128), (1009, 300, 1008, 128), (97, 250, 64, 16)],
)
def test_tiles_cover_every_pixel_stay_inside_and_are_full_size(
    width: int, height: int, tile: int, overlap: int
) -> None:
    windows = tile_grid(width, height, tile, overlap)
    assert covered(width, height, tile, overlap) == {
        (x, y) for x in range(width) for y in range(height)
    }
    for col, row, w, h in windows:
        assert col >= 0 and col + w <= width and row >= 0 and row + h <= height
        assert (w, h) == (min(tile, width), min(tile, height))
    assert len(set(windows)) == len(windows)


def test_neighbours_overlap_by_at_least_the_overlap() -> None:
    cols = sorted({col for col, _, _, _ in tile_grid(600, 100, 256, 32)})
    assert cols == [0, 224, 344]  # the last tile is flush with the edge, not a sliver
    assert all(b - a <= 256 - 32 for a, b in itertools.pairwise(cols))


def test_a_raster_smaller_than_a_tile_is_one_tile_of_its_own_size() -> None:
    assert tile_grid(10, 7, 1008, 128) == [(0, 0, 10, 7)]


@pytest.mark.parametrize(("tile", "overlap"), [(0, 0), (256, 256), (256, -1)])
def test_an_impossible_grid_is_refused(tile: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="overlap"):
        tile_grid(100, 100, tile, overlap)


def test_job_backends_setting_parses_urls_and_concurrency() -> None:
    settings = SidecarSettings.from_environ(
        {"GEOLIBRE_ML_JOB_BACKENDS": "http://gpu-a:8000/, https://u:p@ray.lan:8443#8"}
    )
    assert settings.job_backends == (("http://gpu-a:8000", 1), ("https://u:p@ray.lan:8443", 8))


@pytest.mark.parametrize("value", ["gpu-a:8000", "http://a:1#0", "http://a:1#many"])
def test_a_bad_job_backend_stops_start_up_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match="GEOLIBRE_ML_JOB_BACKENDS"):
        SidecarSettings.from_environ({"GEOLIBRE_ML_JOB_BACKENDS": value})
