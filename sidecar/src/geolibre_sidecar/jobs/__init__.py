"""Tiled segmentation jobs: big rasters cut into tiles (by the model environment's
Python), the tiles sent over a pool of samgeo-api backends, the answers merged."""
