"""A deterministic SAM 3 for the seam-merge test: with this folder on ``PYTHONPATH``,
samgeo's ``SamGeo3.generate_masks`` answers any text prompt with one mask per
4-connected region of bright pixels (mean of the RGB bands above ``THRESHOLD``),
scored by the region's mean brightness / 255.

Only the model's forward pass is replaced. samgeo-api's HTTP handling, its
GeoTIFF reading, the model's loading, ``save_masks`` and the mask-to-polygon
vectorisation with the tile's georeferencing all stay the real ones. Python
imports this file at start-up in every process given this ``PYTHONPATH`` (the
sidecar, the tile runner, samgeo-api); it only patches ``samgeo.samgeo3`` when
some process imports it, so the others are untouched.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

TARGET = "samgeo.samgeo3"
THRESHOLD = 128


def bright_regions(self: Any, prompt: str, min_size: int = 0, max_size: Any = None,
                   quiet: bool = False, **kwargs: Any) -> None:  # fmt: skip
    """``SamGeo3.generate_masks`` with the bright regions of ``self.image`` as masks."""
    import numpy as np
    from scipy import ndimage

    image = np.asarray(self.image, dtype=np.float32)
    labels, _ = ndimage.label(image.mean(axis=2) > THRESHOLD)
    masks, boxes, scores = [], [], []
    for index, region in enumerate(ndimage.find_objects(labels), start=1):
        rows, cols = region
        mask = labels == index
        masks.append(mask)
        boxes.append(np.array([cols.start, rows.start, cols.stop, rows.stop], dtype=np.float32))
        scores.append(round(float(image[mask].mean()) / 255, 4))
    self.masks, self.boxes, self.scores = masks, boxes, scores
    self._convert_results_to_numpy()
    if min_size > 0 or max_size is not None:
        self._filter_masks_by_size(min_size, max_size)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            module.SamGeo3.generate_masks = bright_regions

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _PatchOnImport())
