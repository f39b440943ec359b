"""SAM 3's weights: the Hub token, what is on disk, fetching, and whether a
segmentation can succeed now.

``hub_runner`` is not imported here: it is a script run by path with the model
environment's Python (stdlib and huggingface_hub only).
"""

from geolibre_env.weights.availability import (
    FOREIGN_SOURCES,
    MANAGED_SOURCE,
    NOT_CHECKED_CMD,
    NOT_CHECKED_URL,
    Availability,
    WeightsVerdict,
    segmentation_availability,
    weights_verdict,
)
from geolibre_env.weights.models import (
    OTHER_MODELS,
    install_call,
    install_command,
    known_models,
    model_weights,
)
from geolibre_env.weights.sam3 import (
    WeightsStatus,
    active_weights_status,
    fetch_weights,
    planned_backend,
    weights_status,
)

__all__ = [
    "FOREIGN_SOURCES",
    "MANAGED_SOURCE",
    "NOT_CHECKED_CMD",
    "NOT_CHECKED_URL",
    "OTHER_MODELS",
    "Availability",
    "WeightsStatus",
    "WeightsVerdict",
    "active_weights_status",
    "fetch_weights",
    "install_call",
    "install_command",
    "known_models",
    "model_weights",
    "planned_backend",
    "segmentation_availability",
    "weights_status",
    "weights_verdict",
]
