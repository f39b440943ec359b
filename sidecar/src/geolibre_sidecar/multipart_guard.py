"""Validate a multipart/form-data body while it streams through, without keeping it.

The proxy feeds every chunk it forwards; file data is only counted, text
fields are kept (they are small) and checked against
:mod:`geolibre_sidecar.segment_fields` the moment each part ends. Fields
samgeo-api does not know are forwarded untouched, as FastAPI ignores them
(GeoLibre's app sends ``model_version`` to every mode). The proxy forwards only
up to :attr:`MultipartGuard.forwardable`, which never includes the closing
boundary, until :meth:`MultipartGuard.finish` passes: the backend never receives
a complete request that we would have refused, and a part can still be added
before that boundary (:func:`form_part`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, auto

from geolibre_sidecar.errors import BadRequest, InvalidField, SidecarError
from geolibre_sidecar.segment_fields import check_value, field_table

MAX_HEADER_BYTES = 16 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_PREAMBLE_BYTES = 64 * 1024
# `; key="quoted \"value\""` or `; key=token`, as in Content-Type and Content-Disposition.
_PARAM = re.compile(r';\s*([A-Za-z0-9_.*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')
_ESCAPE = re.compile(r"\\(.)")


class _State(Enum):
    PREAMBLE = auto()
    AFTER_DELIMITER = auto()
    HEADERS = auto()
    BODY = auto()
    END = auto()


@dataclass
class FormSummary:
    """What the body held: text fields verbatim, the file by name and size only."""

    fields: dict[str, str] = field(default_factory=dict)
    file_name: str | None = None
    file_bytes: int = 0
    ignored: list[str] = field(default_factory=list)  # unknown to samgeo-api, forwarded


@dataclass
class _Part:
    name: str
    filename: str | None
    known: bool = True
    size: int = 0
    value: bytearray = field(default_factory=bytearray)


def form_part(boundary: bytes, name: str, value: str) -> bytes:
    """One text part, RFC 7578 framing, to insert just before the closing delimiter."""
    return (
        b"\r\n--" + boundary + b'\r\nContent-Disposition: form-data; name="'
        + name.encode("ascii") + b'"\r\n\r\n' + value.encode("utf-8")
    )  # fmt: skip


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """``'form-data; name="a"'`` -> ``("form-data", {"name": "a"})`` (quotes and escapes undone).

    Hand-written rather than email.message: it runs for every part of every
    request, and the email parser cost a measurable part of a millisecond.
    """
    kind, _, rest = value.partition(";")
    params = {}
    for key, raw in _PARAM.findall(";" + rest):
        if raw.startswith('"'):
            raw = _ESCAPE.sub(r"\1", raw[1:-1])
        params[key.lower()] = raw
    return kind.strip().lower(), params


def boundary_of(content_type: str) -> bytes:
    """The boundary of a multipart/form-data Content-Type, or a 400 saying what is wrong."""
    kind, params = header_params(content_type)
    if kind != "multipart/form-data":
        raise BadRequest(
            "Send the image as multipart/form-data (a form with a 'file' field), "
            f"not {kind or 'an empty Content-Type'}."
        )
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 200:
        raise BadRequest("The multipart Content-Type has no valid boundary parameter.")
    return boundary.encode("latin-1")


class MultipartGuard:
    """An incremental multipart parser that only validates."""

    def __init__(
        self,
        boundary: bytes,
        endpoint: str,
        *,
        vet: Callable[[str, str], None] | None = None,
    ) -> None:
        """``vet(name, value)`` may raise a :class:`SidecarError` for a known text field
        that is well-formed but cannot be served here (e.g. ``backend=meta`` without CUDA)."""
        self.endpoint = endpoint
        self._fields = field_table(endpoint)
        self._vet = vet
        self._first_delimiter = b"--" + boundary
        self._delimiter = b"\r\n--" + boundary
        self._state = _State.PREAMBLE
        self._pending = b""
        self._part: _Part | None = None
        self._seen: set[str] = set()
        self._preamble_bytes = 0
        self._fed = 0
        self._delimiter_at = 0  # stream offset where the latest delimiter starts
        self.summary = FormSummary()

    @property
    def forwardable(self) -> int:
        """How many bytes of the stream may go to the backend now.

        Never the delimiter just found (it may be the closing one) nor bytes not
        yet scanned (they may start it): the closing boundary stays here until
        :meth:`finish` has passed, and a part can be inserted before it.
        """
        if self._state in (_State.AFTER_DELIMITER, _State.END):
            return self._delimiter_at
        return self._fed - len(self._pending)

    @property
    def closing_offset(self) -> int:
        """Stream offset of the closing delimiter (valid once :meth:`finish` passed)."""
        return self._delimiter_at

    def feed(self, chunk: bytes) -> None:
        """Consume the next chunk; raises a :class:`SidecarError` on bad input."""
        base = self._fed - len(self._pending)  # stream offset of data[0]
        self._fed += len(chunk)
        data = self._pending + chunk if self._pending else chunk
        pos = 0
        while True:
            state = self._state
            if state is _State.PREAMBLE:
                index = data.find(self._first_delimiter, pos)
                if index < 0:
                    keep = len(self._first_delimiter) - 1
                    self._preamble_bytes += max(0, len(data) - pos - keep)
                    if self._preamble_bytes > MAX_PREAMBLE_BYTES:
                        raise BadRequest("The body is not multipart/form-data (no boundary found).")
                    pos = max(pos, len(data) - keep)
                    break
                pos = index + len(self._first_delimiter)
                self._delimiter_at = base + index
                self._state = _State.AFTER_DELIMITER
            elif state is _State.AFTER_DELIMITER:
                if len(data) - pos < 2:
                    break
                marker = data[pos : pos + 2]
                pos += 2
                if marker == b"--":
                    self._state = _State.END
                elif marker == b"\r\n":
                    self._state = _State.HEADERS
                else:
                    raise BadRequest("The multipart body is malformed (bad boundary line).")
            elif state is _State.HEADERS:
                index = data.find(b"\r\n\r\n", pos)
                if index < 0:
                    if len(data) - pos > MAX_HEADER_BYTES:
                        raise BadRequest("A multipart part has oversized or broken headers.")
                    break
                self._part = self._start_part(data[pos:index])
                pos = index + 4
                self._state = _State.BODY
            elif state is _State.BODY:
                index = data.find(self._delimiter, pos)
                end = index if index >= 0 else len(data) - (len(self._delimiter) - 1)
                if end > pos:
                    self._consume(data, pos, end)
                    pos = end
                if index < 0:
                    break
                self._end_part()
                pos = index + len(self._delimiter)
                self._delimiter_at = base + index
                self._state = _State.AFTER_DELIMITER
            else:  # END: the epilogue is ignored, as RFC 2046 says, but it is held
                self._preamble_bytes += len(data) - pos  # back with the closing boundary
                if self._preamble_bytes > MAX_PREAMBLE_BYTES:
                    raise BadRequest("The body goes on long after its closing boundary.")
                pos = len(data)
                break
        self._pending = data[pos:]

    def finish(self) -> FormSummary:
        """Call at the end of the body: checks completeness and required fields."""
        if self._state is not _State.END:
            raise BadRequest("The multipart body ended early (no closing boundary).")
        for spec in self._fields.values():
            if spec.required and spec.name not in self._seen:
                hint = f" ({spec.what})" if spec.what else ""
                also = ""
                if self.summary.ignored:  # most likely a typo of this one
                    ignored = ", ".join(f"'{name}'" for name in self.summary.ignored)
                    also = f"; samgeo-api ignores fields it does not know, like {ignored}"
                raise InvalidField(f"Field '{spec.name}' is required{hint}{also}.")
        if self.endpoint == "predict" and not (
            self.summary.fields.get("point_coords") or self.summary.fields.get("boxes")
        ):
            raise InvalidField("Send point_coords or boxes with /segment/predict.")
        return self.summary

    def _start_part(self, raw_headers: bytes) -> _Part:
        disposition = ""
        for line in raw_headers.decode("utf-8", "replace").split("\r\n"):
            key, sep, value = line.partition(":")
            if not sep:
                raise BadRequest("A multipart part has a malformed header line.")
            if key.strip().lower() == "content-disposition":
                disposition = value
        kind, params = header_params(disposition)
        name = params.get("name")
        if kind != "form-data" or not name:
            raise BadRequest("A multipart part has no Content-Disposition name.")
        filename = params.get("filename")
        is_file = isinstance(filename, str)
        spec = self._fields.get(name)
        if spec is None:
            # samgeo-api (FastAPI) ignores fields it does not know: so do we.
            self.summary.ignored.append(name)
            return _Part(name=name, filename=filename if is_file else None, known=False)
        if name in self._seen:
            raise InvalidField(f"Field '{name}' was sent more than once.")
        if spec.type == "file" and not is_file:
            raise InvalidField(f"Field '{name}' must be a file upload ({spec.what}).")
        if spec.type != "file" and is_file:
            raise InvalidField(f"Field '{name}' must be text, not a file.")
        self._seen.add(name)
        return _Part(name=name, filename=filename if is_file else None)

    def _consume(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        assert part is not None
        part.size += end - start
        if part.filename is None:
            if part.size > MAX_FIELD_BYTES:
                raise InvalidField(f"Field '{part.name}' is too long.")
            if part.known:
                part.value += data[start:end]

    def _end_part(self) -> None:
        part = self._part
        assert part is not None
        self._part = None
        if not part.known:
            return
        if part.filename is not None:
            if part.size == 0:
                raise InvalidField("The uploaded file is empty.")
            self.summary.file_name = part.filename
            self.summary.file_bytes = part.size
            return
        value = part.value.decode("utf-8", "replace")
        spec = self._fields[part.name]
        if spec.required and not value.strip():
            raise InvalidField(f"Field '{part.name}' is empty; send {spec.what}.")
        problem = check_value(spec, value)
        if problem:
            raise InvalidField(problem)
        if self._vet is not None:
            self._vet(part.name, value)
        self.summary.fields[part.name] = value


__all__ = ["FormSummary", "MultipartGuard", "SidecarError", "boundary_of", "form_part"]
