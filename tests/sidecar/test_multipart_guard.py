"""The streaming multipart validator: same verdict however the body is chunked."""

from __future__ import annotations

import pytest
from geolibre_sidecar.errors import BadRequest, InvalidField
from geolibre_sidecar.multipart_guard import MultipartGuard, boundary_of

BOUNDARY = "----geolibreTestBoundary7MA4YWxkTrZu0gW"


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if filename is not None:
        head += "Content-Type: image/tiff\r\n"
    return head.encode() + b"\r\n" + value + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


# A file that contains something that looks like a boundary, but is not one.
TRICKY_FILE = b"II*\x00" + b"\r\n--" + BOUNDARY[:-1].encode() + b"x" * 3000 + b"\r\n-"


def run(data: bytes, endpoint: str, cuts: list[int]):
    guard = MultipartGuard(BOUNDARY.encode(), endpoint)
    start = 0
    for cut in [*cuts, len(data)]:
        guard.feed(data[start:cut])
        start = cut
    return guard.finish()


def test_valid_text_body_is_summarised_for_every_two_way_split():
    data = body(part("file", TRICKY_FILE, "scene.tif"), part("prompt", b"trees"),
                part("confidence_threshold", b"0.35"))  # fmt: skip
    for cut in range(0, len(data) + 1, 7):
        summary = run(data, "text", [cut])
        assert summary.fields == {"prompt": "trees", "confidence_threshold": "0.35"}
        assert summary.file_name == "scene.tif"
        assert summary.file_bytes == len(TRICKY_FILE)


def test_byte_by_byte_feeding_gives_the_same_result():
    data = body(part("prompt", b"buildings"), part("file", b"\x89PNG" + b"\0" * 100, "a.png"))
    summary = run(data, "text", list(range(1, len(data))))
    assert summary.fields == {"prompt": "buildings"}
    assert summary.file_bytes == 104


@pytest.mark.parametrize(
    ("endpoint", "parts", "message"),
    [
        ("text", [part("prompt", b"trees")], "Field 'file' is required"),
        ("text", [part("file", b"x", "a.tif")], "Field 'prompt' is required"),
        ("text", [part("file", b"x", "a.tif"), part("prompt", b"  ")], "Field 'prompt' is empty"),
        ("text", [part("file", b"", "a.tif"), part("prompt", b"t")], "uploaded file is empty"),
        ("text", [part("file", b"x", "a.tif"), part("promt", b"t")], "Unknown field 'promt'"),
        ("text", [part("file", b"x"), part("prompt", b"t")], "must be a file upload"),
        ("text", [part("file", b"x", "a"), part("prompt", b"t", "p.txt")], "must be text"),
        (
            "text",
            [part("file", b"x", "a"), part("prompt", b"t"), part("prompt", b"u")],
            "sent more than once",
        ),
        (
            "text",
            [part("file", b"x", "a"), part("prompt", b"t"), part("confidence_threshold", b"hi")],
            "must be a number",
        ),
        ("automatic", [part("file", b"x", "a"), part("points_per_side", b"3.5")], "whole number"),
        ("automatic", [part("file", b"x", "a"), part("unique", b"maybe")], "true or false"),
        (
            "predict",
            [part("file", b"x", "a"), part("point_coords", b"[[1, 2],")],
            "must be JSON",
        ),
        (
            "predict",
            [part("file", b"x", "a"), part("boxes", b'[["a", 1, 2, 3]]')],
            "JSON list of numbers",
        ),
        ("predict", [part("file", b"x", "a")], "Send point_coords or boxes"),
    ],
)
def test_bad_fields_are_refused_with_a_sentence(endpoint, parts, message):
    with pytest.raises(InvalidField, match=message):
        run(body(*parts), endpoint, [])


def test_field_errors_surface_as_soon_as_the_part_ends_not_at_the_end():
    data = body(part("confidence_threshold", b"abc"), part("file", b"x" * 10_000, "a.tif"))
    guard = MultipartGuard(BOUNDARY.encode(), "text")
    first_part_end = data.index(b"--" + BOUNDARY.encode(), 10) + len(BOUNDARY) + 4
    with pytest.raises(InvalidField):
        guard.feed(data[:first_part_end])


@pytest.mark.parametrize(
    "data",
    [
        b"not multipart at all" * 10_000,
        f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--{BOUNDARY}--".encode(),
        f"--{BOUNDARY}XX".encode(),
        f"--{BOUNDARY}\r\nno colon here\r\n\r\nx".encode(),
    ],
)
def test_malformed_bodies_are_bad_requests(data):
    with pytest.raises(BadRequest):
        run(data, "text", [])


def test_a_body_without_its_closing_boundary_is_incomplete():
    data = body(part("file", b"x", "a.tif"), part("prompt", b"t"))[:-10]
    with pytest.raises(BadRequest, match="ended early"):
        run(data, "text", [])


def test_boundary_parsing():
    assert boundary_of(f'multipart/form-data; boundary="{BOUNDARY}"') == BOUNDARY.encode()
    with pytest.raises(BadRequest, match="multipart/form-data"):
        boundary_of("application/json")
    with pytest.raises(BadRequest, match="boundary"):
        boundary_of("multipart/form-data")
