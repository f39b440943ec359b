"""The streaming multipart validator: same verdict however the body is chunked."""

from __future__ import annotations

import email.parser
import email.policy

import pytest
from geolibre_sidecar.errors import BadRequest, InvalidField, NotSupportedHere
from geolibre_sidecar.multipart_guard import MultipartGuard, boundary_of, form_part
from geolibre_sidecar.sam3_modes import from_record

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
        (
            "text",
            [part("file", b"x", "a.tif"), part("promt", b"t")],
            "Field 'prompt' is required .*ignores fields it does not know, like 'promt'",
        ),
        (
            "text",
            [part("file", b"x", "a"), part("file", b"y", "b"), part("prompt", b"t")],
            "Field 'file' was sent more than once",
        ),
        (
            "text",
            [part("file", b"x", "a"), part("prompt", b"t"), part("note", b"n" * 70_000)],
            "Field 'note' is too long",
        ),
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


# What GeoLibre's app sends (mlSegment): model_version and output_format in every mode.
APP_TEXT = body(
    part("file", TRICKY_FILE, "scene.tif"),
    part("model_version", b"sam3"),
    part("output_format", b"geojson"),
    part("prompt", b"trees"),
    part("confidence_threshold", b"0.4"),
    part("client_note", b"samgeo-api ignores this"),
    part("extra_file", b"ignored bytes", "notes.txt"),
)


def test_fields_samgeo_api_does_not_know_are_forwarded_not_refused():
    for cut in range(0, len(APP_TEXT) + 1, 11):
        summary = run(APP_TEXT, "text", [cut])
        assert summary.fields == {
            "output_format": "geojson", "prompt": "trees", "confidence_threshold": "0.4"
        }  # fmt: skip
        assert summary.ignored == ["model_version", "client_note", "extra_file"]
        assert summary.file_name == "scene.tif", "an unknown file part is not the image"
        assert summary.file_bytes == len(TRICKY_FILE)


def forward(data: bytes, cuts: list[int], guard: MultipartGuard) -> tuple[bytes, bytes]:
    """What the proxy may send before finish(), and the rest (as the proxy splits it)."""
    sent = b""
    start = 0
    for cut in [*cuts, len(data)]:
        guard.feed(data[start:cut])
        start = cut
        assert guard.forwardable >= len(sent), "forwardable never goes back"
        sent = data[: guard.forwardable]
    return sent, data[len(sent) :]


def parse_form(data: bytes) -> list[tuple[str, bytes]]:
    """The parts as the standard library's MIME parser reads them (not our guard)."""
    head = f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + data)
    assert message.is_multipart() and not message.defects, message.defects
    return [(p.get_param("name", header="content-disposition"), p.get_payload(decode=True))
            for p in message.iter_parts()]  # fmt: skip


def test_the_closing_boundary_is_never_forwarded_before_finish_for_any_split():
    closing = len(APP_TEXT) - len(f"\r\n--{BOUNDARY}--\r\n")
    for first in range(0, len(APP_TEXT) + 1, 13):
        for second in (first, first + 1, first + 5, len(APP_TEXT) - 1):
            cuts = sorted({first, min(second, len(APP_TEXT))})
            guard = MultipartGuard(BOUNDARY.encode(), "text")
            sent, _rest = forward(APP_TEXT, cuts, guard)
            guard.finish()
            assert len(sent) <= closing < len(APP_TEXT)
            assert guard.closing_offset == closing


def test_a_part_inserted_at_the_closing_offset_makes_a_valid_form_with_it_last():
    byte_by_byte = list(range(1, len(APP_TEXT)))
    for cuts in ([], [len(APP_TEXT) - 3], [len(APP_TEXT) - 20], byte_by_byte):
        guard = MultipartGuard(BOUNDARY.encode(), "text")
        sent, rest = forward(APP_TEXT, cuts, guard)
        guard.finish()
        cut = guard.closing_offset - len(sent)
        extra = form_part(BOUNDARY.encode(), "backend", "transformers")
        forwarded = sent + rest[:cut] + extra + rest[cut:]
        assert len(forwarded) == len(APP_TEXT) + len(extra)
        parts = parse_form(forwarded)
        assert parts[-1] == ("backend", b"transformers")
        assert parts[:-1] == parse_form(APP_TEXT), "the client's parts are unchanged"
        # And our own guard accepts it again, the backend field now known.
        assert run(forwarded, "text", []).fields["backend"] == "transformers"


def test_an_epilogue_is_held_back_but_not_without_limit():
    data = APP_TEXT + b"\r\nepilogue"
    guard = MultipartGuard(BOUNDARY.encode(), "text")
    sent, _rest = forward(data, [len(data) - 4], guard)
    assert len(sent) == guard.closing_offset
    with pytest.raises(BadRequest, match="long after its closing boundary"):
        run(APP_TEXT + b"x" * 70_000, "text", [])


CPU_ENV = {"sam3_backend": "transformers", "cuda_working": False, "build": "cu130"}


def test_an_explicit_meta_backend_is_refused_where_cuda_does_not_work():
    here = from_record(CPU_ENV)
    data = body(part("file", b"x", "a"), part("backend", b"meta"), part("prompt", b"t"))
    guard = MultipartGuard(BOUNDARY.encode(), "text", vet=here.vetter("text"))
    with pytest.raises(NotSupportedHere, match="backend=meta cannot run on this computer"):
        guard.feed(data)
    explicit = body(part("file", b"x", "a"), part("backend", b"transformers"), part("prompt", b"t"))
    guard = MultipartGuard(BOUNDARY.encode(), "text", vet=here.vetter("text"))
    guard.feed(explicit)
    assert guard.finish().fields["backend"] == "transformers"
    gpu = from_record({"sam3_backend": "meta", "cuda_working": True})
    guard = MultipartGuard(BOUNDARY.encode(), "text", vet=gpu.vetter("text"))
    guard.feed(data)
    assert guard.finish().fields["backend"] == "meta"


def test_a_meta_only_request_is_refused_when_its_deciding_field_arrives():
    here = from_record(CPU_ENV)
    data = body(part("model_version", b"sam3"), part("file", b"x" * 5000, "a"))
    guard = MultipartGuard(BOUNDARY.encode(), "automatic", vet=here.vetter("automatic"))
    with pytest.raises(NotSupportedHere, match="/segment/automatic with SAM 3 cannot run"):
        guard.feed(data[:200])  # before the file: nothing of it was needed
    # SAM 1 has its own code, which runs on the CPU: not ours to refuse.
    sam1 = body(part("model_version", b"sam"), part("file", b"x", "a"))
    guard = MultipartGuard(BOUNDARY.encode(), "automatic", vet=here.vetter("automatic"))
    guard.feed(sam1)
    assert here.refusal("automatic", guard.finish().fields) is None
