"""The form fields of samgeo-api's three segment endpoints, and how to check them.

Mirrors ``samgeo-api-1.4.2.openapi.json`` (a test compares the two), so a
malformed value of a known field is refused here, with a sentence, before the
backend spends minutes on a request it will reject. Fields not listed here are
forwarded untouched: samgeo-api (FastAPI) ignores them, and GeoLibre's app sends
``model_version`` to every mode.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal

FieldType = Literal["file", "string", "integer", "number", "boolean", "json"]

_TRUE = {"true", "1", "yes", "on", "y", "t"}
_FALSE = {"false", "0", "no", "off", "n", "f"}


@dataclass(frozen=True)
class FormField:
    name: str
    type: FieldType
    required: bool = False
    default: object = None
    what: str = ""  # how a user would describe it, for error messages


def _common(model_version: bool) -> tuple[FormField, ...]:
    fields = [
        FormField("file", "file", required=True, what="the image to segment"),
        FormField("model_id", "string"),
        FormField("output_format", "string", default="geojson"),
        FormField("min_size", "integer", default=0),
        FormField("max_size", "integer"),
    ]
    if model_version:
        fields.insert(1, FormField("model_version", "string", default="sam3"))
    return tuple(fields)


ENDPOINT_FIELDS: dict[str, tuple[FormField, ...]] = {
    "text": (
        *_common(model_version=False),
        FormField("prompt", "string", required=True, what='what to find, e.g. "trees"'),
        FormField("backend", "string", default="meta"),
        FormField("confidence_threshold", "number", default=0.5),
    ),
    "automatic": (
        *_common(model_version=True),
        FormField("foreground", "boolean", default=True),
        FormField("unique", "boolean", default=True),
        FormField("points_per_side", "integer", default=32),
        FormField("pred_iou_thresh", "number", default=0.8),
        FormField("stability_score_thresh", "number", default=0.95),
    ),
    "predict": (
        *_common(model_version=True),
        FormField("point_coords", "json", what="[[x, y], ...]"),
        FormField("point_labels", "json", what="[1, 0, ...]"),
        FormField("boxes", "json", what="[[xmin, ymin, xmax, ymax], ...]"),
        FormField("point_crs", "string"),
        FormField("multimask_output", "boolean", default=False),
    ),
}


def field_table(endpoint: str) -> dict[str, FormField]:
    return {f.name: f for f in ENDPOINT_FIELDS[endpoint]}


def check_value(spec: FormField, raw: str) -> str | None:
    """A sentence saying what is wrong with ``raw`` for ``spec``, or None if it is fine."""
    value = raw.strip()
    if spec.type == "string" or (value == "" and not spec.required):
        return None
    if spec.type == "integer":
        try:
            int(value)
        except ValueError:
            return f"Field '{spec.name}' must be a whole number, not {raw[:40]!r}."
        return None
    if spec.type == "number":
        try:
            number = float(value)
        except ValueError:
            return f"Field '{spec.name}' must be a number, not {raw[:40]!r}."
        return None if math.isfinite(number) else f"Field '{spec.name}' must be finite."
    if spec.type == "boolean":
        if value.lower() in _TRUE | _FALSE:
            return None
        return f"Field '{spec.name}' must be true or false, not {raw[:40]!r}."
    if spec.type == "json":
        try:
            parsed = json.loads(value)
        except RecursionError:
            return f"Field '{spec.name}' is nested too deeply; it must be like {spec.what}."
        except ValueError:
            return f"Field '{spec.name}' must be JSON like {spec.what}, not {raw[:40]!r}."
        if not _numeric_array(parsed, MAX_JSON_DEPTH):
            return (
                f"Field '{spec.name}' must be a JSON list of numbers like {spec.what}, "
                f"nested at most {MAX_JSON_DEPTH} deep."
            )
        return None
    return None


# Points, labels and boxes are lists of lists at most; a little room for batches.
MAX_JSON_DEPTH = 4


def _numeric_array(value: object, depth: int) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if depth == 0 or not isinstance(value, list) or not value:
        return False
    return all(_numeric_array(v, depth - 1) for v in value)
