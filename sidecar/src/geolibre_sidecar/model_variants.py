"""Keep samgeo-api's model cache from filling GPU memory.

samgeo-api caches one full model per distinct (version, model id, settings)
and never evicts: every new ``confidence_threshold`` or ``backend`` on
/segment/text loads another SAM 3 copy. The policy: remember the variants
this backend process has loaded; when a request needs a new one and
``GEOLIBRE_ML_MAX_MODEL_VARIANTS`` are already loaded, ask samgeo-api to drop
its cache (``DELETE /models``) before the request is released to it. 0
disables the policy. It applies to backends the sidecar launched, never to
an external one that others may share.
"""

from __future__ import annotations

from collections.abc import Mapping

VariantKey = tuple[object, ...]


def variant_key(endpoint: str, fields: Mapping[str, str]) -> VariantKey:
    """The cache key samgeo-api 1.4.2 builds for a request (see its get_model calls)."""
    model_id = fields.get("model_id") or "default"
    if endpoint == "text":
        threshold = float(fields.get("confidence_threshold") or 0.5)
        return ("sam3", model_id, fields.get("backend") or "meta", threshold)
    version = fields.get("model_version") or "sam3"
    if version == "sam3":  # SAM 3 ignores the mode-specific settings in its key
        return (version, model_id)
    if endpoint == "automatic":
        return (
            version,
            model_id,
            fields.get("points_per_side") or "32",
            fields.get("pred_iou_thresh") or "0.8",
            fields.get("stability_score_thresh") or "0.95",
        )
    return (version, model_id, "predict")


class ModelVariants:
    """The variants one backend process holds; reset when the process changes."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self._owner: object = None
        self._loaded: set[VariantKey] = set()
        self.clears = 0

    def _follow(self, owner: object) -> None:
        if owner != self._owner:
            self._owner, self._loaded = owner, set()

    def needs_clear(self, owner: object, key: VariantKey) -> bool:
        self._follow(owner)
        return self.bound > 0 and key not in self._loaded and len(self._loaded) >= self.bound

    def cleared(self) -> None:
        self._loaded.clear()
        self.clears += 1

    def loaded(self, owner: object, key: VariantKey) -> None:
        self._follow(owner)
        self._loaded.add(key)

    def snapshot(self) -> dict[str, object]:
        return {
            "bound": self.bound,
            "loaded": [list(map(str, key)) for key in sorted(self._loaded, key=str)],
            "clears": self.clears,
        }
