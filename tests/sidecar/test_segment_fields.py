"""The sidecar's field table must match samgeo-api's published schema exactly."""

from __future__ import annotations

import pytest
from geolibre_sidecar.segment_fields import ENDPOINT_FIELDS

from tests.reference import openapi


def reference_fields(path: str) -> dict[str, tuple[str, object, bool]]:
    spec = openapi()
    body = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    schema = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    required = set(schema.get("required", []))
    out = {}
    for name, prop in schema["properties"].items():
        kinds = [p.get("type") for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
        kind = kinds[0]
        if prop.get("contentMediaType") == "application/octet-stream":
            kind = "file"
        out[name] = (kind, prop.get("default"), name in required)
    return out


@pytest.mark.parametrize("endpoint", sorted(ENDPOINT_FIELDS))
def test_field_table_matches_the_openapi_schema(endpoint):
    expected = reference_fields(f"/segment/{endpoint}")
    ours = {}
    for field in ENDPOINT_FIELDS[endpoint]:
        kind = "string" if field.type == "json" else field.type
        ours[field.name] = (kind, field.default, field.required)
    assert ours == expected


@pytest.mark.parametrize("depth", [5, 400, 5000])
def test_deeply_nested_point_coords_is_a_sentence_not_a_recursion_error(depth):
    from geolibre_sidecar.segment_fields import check_value, field_table

    spec = field_table("predict")["point_coords"]
    message = check_value(spec, "[" * depth + "1" + "]" * depth)
    assert message is not None and "point_coords" in message and "nested" in message
    assert check_value(spec, "[[1, 2], [3.5, 4]]") is None
