"""A stand-in for samgeo-api 1.4.2 that tests can run as a real HTTP server.

The real server needs a GPU, 7 GB of packages and gated weights, so tests drive
this instead. From the outside it behaves like samgeo-api under uvicorn: the
same routes, form fields, status codes and error texts, uvicorn's log lines and
signal handling, and an event loop that is BLOCKED while "inference" runs.
Switches make it slow, crash, fail or hang on purpose.

Start-up, environment only: STANDIN_START_DELAY_S, STANDIN_START_PROGRESS
(cpu|output|none), STANDIN_FAIL_START (text; exit 1), STANDIN_HANG_START,
STANDIN_EXIT_AFTER_S (exit 1 after ready, printing STANDIN_CRASH_MESSAGE),
STANDIN_IGNORE_SIGTERM, STANDIN_SPAWN_CHILD (prints "standin child pid N").
Run time, ``STANDIN_<NAME>`` at start and ``GET/POST /__standin__/switches``
(JSON) later: see ``Switches``. One request: a prompt of "standin:crash",
"standin:404", "standin:500", "standin:400", "standin:sleep=<s>" or
"standin:cut" (the process dies half-way through sending its answer).
Answers carry a foreign member "standin" (what was received, parsed values,
the model key); ``GET /__standin__/stats`` counts requests.

Standard library only: the file is also packaged as ``samgeo/api.py`` in a
test wheel and installed into bare virtual environments with no network.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import http
import itertools
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

__version__ = "1.4.2"

DEFAULT_MODEL_IDS = {"sam": "vit_h", "sam2": "sam2-hiera-large", "sam3": "facebook/sam3"}
AVAILABLE_MODELS = {
    "sam": ["vit_h", "vit_l", "vit_b"],
    "sam2": ["sam2-hiera-tiny", "sam2-hiera-small", "sam2-hiera-base-plus", "sam2-hiera-large"],
    "sam3": ["facebook/sam3", "facebook/sam3.1"],
}
VALID_OUTPUT_FORMATS = {"geojson", "geotiff", "png", "detections", "json"}

READ_CHUNK_BYTES = 4 * 1024 * 1024  # large reads keep a 1 GiB upload fast
SMALL_BUFFER_BYTES = 64 * 1024  # a connection's receive buffer until a large body comes
MIN_FREE_BYTES = 16 * 1024  # stop reading from the socket below this much room
MAX_FIELD_BYTES = 1024 * 1024  # Starlette's limit for a non-file part
MAX_HEAD_BYTES = 32 * 1024  # below the point where a small buffer stops reading
KEEP_ALIVE_TIMEOUT_S = 5.0  # uvicorn's default
START_PROGRESS_INTERVAL_S = 0.2
CHILD_LIFETIME_S = 600.0
PNG_MAX_SIDE_PX = 1024
DEFAULT_IMAGE_SIDE_PX = 256

NO_GPU_TEXT = (
    "Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU "
    "and installed a driver from http://www.nvidia.com/Download/index.aspx"
)
HUB_OFFLINE_TEXT = (
    "Cannot find the requested files in the disk cache and outgoing traffic has been "
    "disabled. To enable hf.co look-ups and downloads online, set 'HF_HUB_OFFLINE=0' "
    "as environment variable."
)
HUB_UNREACHABLE_TEXT = (
    "An error happened while trying to locate the file on the Hub and we cannot find "
    "the requested files in the local cache. Please check your connection and try "
    "again or make sure your Internet connection is on."
)
NOT_FOUND_TEXTS = {
    "/segment/text": "No objects found for the given prompt. "
    "Please try a different prompt or adjust parameters.",
    "/segment/automatic": "No objects found for automatic segmentation.",
    "/segment/predict": "No objects found for the given prompts.",
}


# --- the form-field table: validation and /openapi.json both come from it ----------


@dataclasses.dataclass(frozen=True)
class FormField:
    """One multipart form field of a segment endpoint (FastAPI ``Form``/``File``)."""

    name: str
    kind: str  # "file" | "str" | "int" | "float" | "bool"
    default: Any = None
    required: bool = False

    @property
    def nullable(self) -> bool:
        return not self.required and self.default is None


_FILE = FormField("file", "file", required=True)
_MODEL_VERSION = FormField("model_version", "str", "sam3")
_MODEL_ID = FormField("model_id", "str")
_OUTPUT_FORMAT = FormField("output_format", "str", "geojson")
_MIN_SIZE = FormField("min_size", "int", 0)
_MAX_SIZE = FormField("max_size", "int")

SEGMENT_ENDPOINTS: dict[str, tuple[FormField, ...]] = {
    "/segment/automatic": (
        _FILE,
        _MODEL_VERSION,
        _MODEL_ID,
        _OUTPUT_FORMAT,
        FormField("foreground", "bool", True),
        FormField("unique", "bool", True),
        _MIN_SIZE,
        _MAX_SIZE,
        FormField("points_per_side", "int", 32),
        FormField("pred_iou_thresh", "float", 0.8),
        FormField("stability_score_thresh", "float", 0.95),
    ),
    "/segment/predict": (
        _FILE,
        _MODEL_VERSION,
        _MODEL_ID,
        _OUTPUT_FORMAT,
        FormField("point_coords", "str"),
        FormField("point_labels", "str"),
        FormField("boxes", "str"),
        FormField("point_crs", "str"),
        FormField("multimask_output", "bool", False),
        _MIN_SIZE,
        _MAX_SIZE,
    ),
    "/segment/text": (
        _FILE,
        FormField("prompt", "str", required=True),
        _MODEL_ID,
        FormField("backend", "str", "meta"),
        _OUTPUT_FORMAT,
        FormField("confidence_threshold", "float", 0.5),
        _MIN_SIZE,
        _MAX_SIZE,
    ),
}

_JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
_SIMPLE_ROUTES = {
    ("/health", "get"): ("Health", "health_health_get", "Health check endpoint."),
    ("/models", "get"): (
        "List Models",
        "list_models_models_get",
        "List available and currently loaded models.",
    ),
    ("/models", "delete"): (
        "Clear Models",
        "clear_models_models_delete",
        "Clear the model cache and free GPU memory.",
    ),
}


def _field_schema(field: FormField) -> dict[str, Any]:
    title = field.name.replace("_", " ").title()
    if field.kind == "file":
        return {"type": "string", "contentMediaType": "application/octet-stream", "title": title}
    schema: dict[str, Any] = {"type": _JSON_TYPES[field.kind]}
    if field.nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    schema["title"] = title
    if not field.required and field.default is not None:
        schema["default"] = field.default
    return schema


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document FastAPI would serve for this field table."""
    ok = {"description": "Successful Response", "content": {"application/json": {"schema": {}}}}
    paths: dict[str, dict[str, Any]] = {}
    for (path, method), (summary, op_id, text) in _SIMPLE_ROUTES.items():
        operation = {"summary": summary, "description": text, "operationId": op_id}
        paths.setdefault(path, {})[method] = {**operation, "responses": {"200": ok}}
    schemas: dict[str, Any] = {}
    for path, fields in SEGMENT_ENDPOINTS.items():
        name = path.strip("/").replace("/", "_")
        op_id = f"{name}_{name}_post"
        body = f"Body_{op_id}"
        schemas[body] = {
            "properties": {f.name: _field_schema(f) for f in fields},
            "type": "object",
            "required": [f.name for f in fields if f.required],
            "title": body,
        }
        invalid = {"$ref": "#/components/schemas/HTTPValidationError"}
        paths[path] = {
            "post": {
                "summary": name.replace("_", " ").title(),
                "operationId": op_id,
                "requestBody": {
                    "content": {
                        "multipart/form-data": {"schema": {"$ref": f"#/components/schemas/{body}"}}
                    },
                    "required": True,
                },
                "responses": {
                    "200": ok,
                    "422": {
                        "description": "Validation Error",
                        "content": {"application/json": {"schema": invalid}},
                    },
                },
            }
        }
    schemas["HTTPValidationError"] = {
        "properties": {
            "detail": {
                "items": {"$ref": "#/components/schemas/ValidationError"},
                "type": "array",
                "title": "Detail",
            }
        },
        "type": "object",
        "title": "HTTPValidationError",
    }
    schemas["ValidationError"] = {
        "properties": {
            "loc": {
                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "type": "array",
                "title": "Location",
            },
            "msg": {"type": "string", "title": "Message"},
            "type": {"type": "string", "title": "Error Type"},
            "input": {"title": "Input"},
            "ctx": {"type": "object", "title": "Context"},
        },
        "type": "object",
        "required": ["loc", "msg", "type"],
        "title": "ValidationError",
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "samgeo API",
            "description": "REST API for geospatial image segmentation with SAM models.",
            "version": __version__,
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }


# --- switches ---------------------------------------------------------------------

MODES = ("ok", "crash", "404", "500", "400")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclasses.dataclass
class Switches:
    """Run-time behaviour; env ``STANDIN_<NAME>`` sets the start value."""

    infer_s: float = 0.0
    load_s: float = 0.0
    mode: str = "ok"
    crash_message: str = "RuntimeError: simulated crash"
    detail_500: str = (
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
        "7.79 GiB of which 1.02 GiB is free."
    )
    detail_400: str = "Invalid JSON in prompt fields: Expecting value: line 1 column 1 (char 0)"
    gpu: bool = True
    require_weights: bool = False
    response_delay_s: float = 0.0
    response_chunks: int = 1

    def update(self, values: Mapping[str, Any]) -> None:
        """Set switches from strings (env) or JSON values; errors name key and value."""
        types = {f.name: f.type for f in dataclasses.fields(self)}
        checked = {}
        for key, raw in values.items():
            if key not in types:
                raise ValueError(f"unknown switch {key!r}; known: {sorted(types)}")
            try:
                value = _coerce(types[key], raw)
            except (TypeError, ValueError):
                raise ValueError(f"switch {key!r}: invalid value {raw!r}") from None
            if key == "mode" and value not in MODES:
                raise ValueError(f"switch 'mode': {value!r} is not one of {list(MODES)}")
            if (key.endswith("_s") and value < 0) or (key == "response_chunks" and value < 1):
                raise ValueError(f"switch {key!r}: {value!r} is out of range")
            checked[key] = value
        for key, value in checked.items():  # all or nothing
            setattr(self, key, value)

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> Switches:
        switches = cls()
        names = [f.name for f in dataclasses.fields(cls)]
        found = {n: env[f"STANDIN_{n.upper()}"] for n in names if f"STANDIN_{n.upper()}" in env}
        switches.update(found)
        return switches


def _coerce(type_name: str, raw: Any) -> Any:
    if type_name == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ValueError(raw)
    if type_name in ("float", "int"):
        if isinstance(raw, bool):
            raise TypeError(raw)
        return float(raw) if type_name == "float" else int(raw)
    return str(raw)


# --- HTTP plumbing ----------------------------------------------------------------


class HttpError(Exception):
    """An error answer: ``{"detail": detail}`` with ``status``."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class BadRequest(Exception):
    """A malformed request: answered like uvicorn, then the connection closes."""


def _log(level: str, message: str, *, stream: Any = None) -> None:
    prefix = f"{level}:" + " " * (8 - len(level))
    print(f"{prefix} {message}", file=stream or sys.stderr, flush=True)


class Channel(asyncio.BufferedProtocol):
    """One connection. The kernel copies received bytes straight into a reused
    buffer: asyncio's StreamReader copies every block twice more and allocates
    fresh memory per read, which made a 1 GiB upload about 40 % slower here.
    """

    def __init__(self, on_open: Callable[[Channel], None]) -> None:
        self._on_open = on_open
        self._buf = bytearray(SMALL_BUFFER_BYTES)
        self._view = memoryview(self._buf)
        self._start = self._end = 0
        self._eof = False
        self._reading_paused = False
        self._writing_paused = False
        self._waiter: asyncio.Future | None = None
        self._drain_waiter: asyncio.Future | None = None
        self.transport: Any = None
        self.peer = "-:0"

    # -- protocol callbacks (called by the event loop)
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=READ_CHUNK_BYTES)
        peer = transport.get_extra_info("peername") or ("-", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        self._on_open(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._start == self._end:
            self._start = self._end = 0
        elif len(self._buf) - self._end < MIN_FREE_BYTES:
            size = self._end - self._start
            self._buf[:size] = bytes(self._view[self._start : self._end])
            self._start, self._end = 0, size
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes
        if len(self._buf) - (self._end - self._start) < MIN_FREE_BYTES:
            self.transport.pause_reading()  # back-pressure on the client
            self._reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return True  # a half-closed client may still read the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionResetError("connection lost"))

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- the reading side, for the request handler
    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _more(self) -> None:
        if self._eof:
            raise asyncio.IncompleteReadError(bytes(self._view[self._start : self._end]), None)
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _consume(self, size: int) -> bytes:
        data = bytes(self._view[self._start : self._start + size])
        self._start += size
        if self._reading_paused and len(self._buf) - (self._end - self._start) >= MIN_FREE_BYTES:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    def reserve(self, size: int) -> None:
        """Grow the receive buffer before a large body (small until then: idle
        keep-alive connections should not hold megabytes each)."""
        if len(self._buf) >= size:
            return
        unread = self._end - self._start
        buf = bytearray(size)
        buf[:unread] = self._view[self._start : self._end]
        self._view.release()
        self._buf, self._view = buf, memoryview(buf)
        self._start, self._end = 0, unread

    async def readuntil(self, separator: bytes, limit: int) -> bytes:
        while (at := self._buf.find(separator, self._start, self._end)) < 0:
            if self._end - self._start > limit:
                raise BadRequest("request head too large")
            await self._more()
        return self._consume(at + len(separator) - self._start)

    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes as soon as any are there; b"" at end of stream."""
        while self._start == self._end:
            if self._eof:
                return b""
            await self._more()
        return self._consume(min(size, self._end - self._start))

    async def readexactly(self, size: int) -> bytes:
        while self._end - self._start < size:
            await self._more()
        return self._consume(size)

    # -- the writing side
    def write(self, data: bytes | memoryview) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        if self.transport.is_closing():
            raise ConnectionResetError("connection lost")
        if self._writing_paused:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclasses.dataclass
class Request:
    """One parsed request head plus the channel its body comes from."""

    method: str
    path: str
    version: str
    headers: dict[str, str]
    channel: Channel
    expect_continue: bool = False

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    async def body(self) -> AsyncIterator[bytes]:
        """Yield the body as it arrives (Content-Length or chunked)."""
        channel = self.channel
        if self.expect_continue:
            self.expect_continue = False
            channel.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        remaining = 0 if chunked else int(self.headers.get("content-length") or 0)
        if chunked or remaining > SMALL_BUFFER_BYTES:
            channel.reserve(READ_CHUNK_BYTES)
        while True:
            if chunked and not remaining:
                line = await channel.readuntil(b"\r\n", MAX_HEAD_BYTES)
                try:
                    remaining = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BadRequest("bad chunk size") from None
                if remaining == 0:
                    while await channel.readuntil(b"\r\n", MAX_HEAD_BYTES) != b"\r\n":
                        pass  # trailers carry nothing we use
                    return
            if not remaining:
                return
            while remaining:
                data = await channel.read(min(remaining, READ_CHUNK_BYTES))
                if not data:
                    raise ConnectionError("client closed the connection mid-body")
                remaining -= len(data)
                yield data
            if chunked and await channel.readexactly(2) != b"\r\n":
                raise BadRequest("bad chunk ending")

    async def read_all(self, limit: int) -> bytes:
        parts = []
        size = 0
        async for chunk in self.body():
            size += len(chunk)
            if size <= limit:
                parts.append(chunk)
        if size > limit:
            raise HttpError(413, "Request body too large")
        return b"".join(parts)


async def read_request(channel: Channel) -> Request:
    head = await channel.readuntil(b"\r\n\r\n", MAX_HEAD_BYTES)
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise BadRequest("bad request line") from None
    if not version.startswith("HTTP/1."):
        raise BadRequest("unsupported HTTP version")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest("bad header line")
        key = name.lower()
        if key == "content-length" and (key in headers or not value.strip().isdigit()):
            raise BadRequest("bad Content-Length")
        headers[key] = value.strip()
    return Request(
        method=method,
        path=target.split("?", 1)[0],
        version=version,
        headers=headers,
        channel=channel,
        expect_continue=headers.get("expect", "").lower() == "100-continue",
    )


@dataclasses.dataclass
class Response:
    """An answer: bytes, or a file streamed from disk in parts."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    file: Path | None = None
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    chunks: int = 1
    delay_s: float = 0.0
    close: bool = False  # the connection cannot be reused after this answer
    cleanup: Callable[[], None] | None = None  # runs once the answer is sent
    die_midway: str | None = None  # crash message: exit after half the body is out

    @classmethod
    def json(cls, status: int, content: Any, **kw: Any) -> Response:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return cls(status, text.encode("utf-8"), **kw)

    async def send(self, writer: Channel, *, keep_alive: bool) -> None:
        size = self.file.stat().st_size if self.file else len(self.body)
        head = [
            f"HTTP/1.1 {self.status} {http.HTTPStatus(self.status).phrase}",
            f"date: {formatdate(usegmt=True)}",
            "server: uvicorn",
            f"content-length: {size}",
            f"content-type: {self.content_type}",
            *(f"{k}: {v}" for k, v in self.headers),
        ]
        if not keep_alive:
            head.append("connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if self.die_midway is not None:
            writer.write(self.body[: size // 2])
            await writer.drain()
            if self.cleanup:  # tidy the spooled upload, as the "crash" directive does
                self.cleanup()
            print(self.die_midway, file=sys.stderr, flush=True)
            os._exit(1)
        # Parts with pauses between them let tests watch a proxy stream the answer.
        cuts = [size * i // self.chunks for i in range(self.chunks + 1)]
        handle = self.file.open("rb") if self.file else None
        try:
            for index, (start, end) in enumerate(itertools.pairwise(cuts)):
                if index and self.delay_s:
                    await asyncio.sleep(self.delay_s)
                while start < end:
                    step = min(end - start, READ_CHUNK_BYTES)
                    piece = handle.read(step) if handle else self.body[start : start + step]
                    writer.write(piece)
                    await writer.drain()
                    start += step
            await writer.drain()
        finally:
            if handle:
                handle.close()


# --- multipart/form-data, parsed as it arrives --------------------------------------


@dataclasses.dataclass
class Upload:
    """A file part spooled to disk, hashed on the way."""

    filename: str
    content_type: str
    path: Path
    size: int = 0
    sha256: str = ""


@dataclasses.dataclass
class Form:
    fields: dict[str, str] = dataclasses.field(default_factory=dict)
    files: dict[str, Upload] = dataclasses.field(default_factory=dict)
    # Every part's name in arrival order, repeats included (a dict keeps only the last).
    part_names: list[str] = dataclasses.field(default_factory=list)


_PARAM = re.compile(r';\s*([\w*.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _header_params(value: str) -> tuple[str, dict[str, str]]:
    main = value.split(";", 1)[0].strip().lower()
    params = {}
    for key, raw in _PARAM.findall(value):
        raw = raw.strip()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[key.lower()] = raw
    return main, params


_spool_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _spool_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _spool_pool
    if _spool_pool is None:
        _spool_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="spool")
    return _spool_pool


class _Part:
    """The part being received: a field in memory or a file on disk.

    A file part is hashed and written by a helper thread (hashlib and file
    writes release the GIL) while the loop receives the next block: that
    overlap roughly halves the time a 1 GiB upload takes.
    """

    def __init__(self, headers: dict[str, str], spool_dir: str, index: int) -> None:
        _, params = _header_params(headers.get("content-disposition", ""))
        if "name" not in params:
            raise BadRequest("multipart part without a name")
        self.name = params["name"]
        self.upload: Upload | None = None
        self.value = bytearray()
        self._pending: concurrent.futures.Future | None = None
        if "filename" in params:
            path = Path(spool_dir) / f"part-{index}"
            ctype = headers.get("content-type", "application/octet-stream")
            self.upload = Upload(params["filename"], ctype, path)
            self._file = path.open("wb", buffering=0)
            self._sha = hashlib.sha256()

    def _spool(self, data: memoryview) -> None:
        self._sha.update(data)
        while data:
            data = data[self._file.write(data) :]

    async def write(self, data: memoryview) -> None:
        if self.upload is None:
            self.value += data
            if len(self.value) > MAX_FIELD_BYTES:
                raise BadRequest("Part exceeded maximum size of 1024KB.")
            return
        if self._pending is not None:  # one block in flight: memory stays bounded
            await asyncio.wrap_future(self._pending)
        self._pending = _spool_executor().submit(self._spool, data)
        self.upload.size += len(data)

    async def finish(self, form: Form) -> None:
        form.part_names.append(self.name)
        if self.upload is None:
            form.fields[self.name] = self.value.decode("utf-8", errors="replace")
            return
        if self._pending is not None:
            await asyncio.wrap_future(self._pending)
        self._file.close()
        self.upload.sha256 = self._sha.hexdigest()
        form.files[self.name] = self.upload

    def abort(self) -> None:
        if self.upload is not None:
            if self._pending is not None:
                concurrent.futures.wait([self._pending])
            self._file.close()


async def read_multipart(body: AsyncIterator[bytes], boundary: bytes, spool_dir: str) -> Form:
    """Parse a multipart body as it arrives, spooling file parts to ``spool_dir``."""
    delimiter = b"\r\n--" + boundary
    keep = len(delimiter) + 1
    form = Form()
    state = "preamble"
    part: _Part | None = None
    buf = b"\r\n"  # lets the first boundary, which has no CRLF before it, match
    try:
        async for chunk in body:
            buf = buf + chunk if buf else chunk
            while True:
                if state in ("preamble", "body"):
                    at = buf.find(delimiter)
                    end = at if at >= 0 else max(0, len(buf) - keep)
                    if part is not None and end:
                        await part.write(memoryview(buf)[:end])
                    if at < 0:
                        buf = buf[end:]
                        break
                    if part is not None:
                        await part.finish(form)
                        part = None
                    buf, state = buf[at + len(delimiter) :], "delimiter"
                elif state == "delimiter":
                    if buf.startswith(b"--"):
                        state = "epilogue"
                        continue
                    eol = buf.find(b"\r\n")
                    if eol < 0:
                        if len(buf) > 1024:
                            raise BadRequest("bad multipart boundary line")
                        break
                    buf, state = buf[eol + 2 :], "headers"
                elif state == "headers":
                    end = 0 if buf.startswith(b"\r\n") else buf.find(b"\r\n\r\n")
                    if end < 0:
                        if len(buf) > MAX_HEAD_BYTES:
                            raise BadRequest("multipart part headers too large")
                        break
                    lines = buf[:end].decode("utf-8", errors="replace").split("\r\n")
                    headers = {}
                    for line in filter(None, lines):
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                    buf = buf[end + (2 if end == 0 else 4) :]
                    part = _Part(headers, spool_dir, len(form.files) + len(form.fields))
                    state = "body"
                else:  # epilogue: ignored, but drained so keep-alive still works
                    buf = b""
                    break
    finally:
        if part is not None:
            part.abort()
    if state != "epilogue":
        raise BadRequest("multipart body ended before its closing boundary")
    return form


async def read_form(request: Request, spool_dir: str) -> Form:
    """The request's form, like Starlette's ``request.form()`` (empty for other types)."""
    ctype, params = _header_params(request.headers.get("content-type", ""))
    if ctype == "multipart/form-data":
        if not params.get("boundary"):
            raise BadRequest("Missing boundary in multipart.")
        return await read_multipart(request.body(), params["boundary"].encode(), spool_dir)
    data = await request.read_all(16 * MAX_FIELD_BYTES)
    if ctype == "application/x-www-form-urlencoded":
        return Form(fields=dict(parse_qsl(data.decode("latin-1"), keep_blank_values=True)))
    return Form()


# --- validation, FastAPI/pydantic style ---------------------------------------------

_PARSE_ERRORS = {
    "int": ("int_parsing", "Input should be a valid integer, unable to parse string as an integer"),
    "float": (
        "float_parsing",
        "Input should be a valid number, unable to parse string as a number",
    ),
    "bool": ("bool_parsing", "Input should be a valid boolean, unable to interpret input"),
}
_TYPE_ERRORS = {
    "str": ("string_type", "Input should be a valid string"),
    "int": ("int_type", "Input should be a valid integer"),
    "float": ("float_type", "Input should be a valid number"),
    "bool": ("bool_type", "Input should be a valid boolean"),
}
_INT_TEXT = re.compile(r"[+-]?\d+(?:\.0*)?")
_BOOL_TEXT = dict.fromkeys(("0", "off", "f", "false", "n", "no"), False) | dict.fromkeys(
    ("1", "on", "t", "true", "y", "yes"), True
)


def _parse_value(kind: str, raw: str) -> Any:
    text = raw.strip()
    if kind == "int" and _INT_TEXT.fullmatch(text):
        return int(float(text)) if "." in text else int(text)
    if kind == "float" and "_" not in text:
        return float(text)
    if kind == "bool" and text.lower() in _BOOL_TEXT:
        return _BOOL_TEXT[text.lower()]
    if kind == "str":
        return raw
    raise ValueError(raw)


def validate_form(fields: tuple[FormField, ...], form: Form) -> tuple[dict[str, Any], list]:
    """Values for every field, or FastAPI's 422 error list (unknown fields ignored)."""
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for field in fields:
        loc = ["body", field.name]
        raw = form.fields.get(field.name)
        upload = form.files.get(field.name)
        if field.kind == "file" and upload is not None:
            values[field.name] = upload
            continue
        if field.kind == "file" and raw:
            msg = "Value error, Expected UploadFile, received: <class 'str'>"
            errors.append(
                {"type": "value_error", "loc": loc, "msg": msg, "input": raw, "ctx": {"error": {}}}
            )
            continue
        if field.kind != "file" and raw is None and upload is not None:
            kind, msg = _TYPE_ERRORS[field.kind]
            errors.append({"type": kind, "loc": loc, "msg": msg, "input": {}})
            continue
        if not raw:  # FastAPI treats an empty form value as absent
            if field.required:
                errors.append(
                    {"type": "missing", "loc": loc, "msg": "Field required", "input": None}
                )
            else:
                values[field.name] = field.default
            continue
        try:
            values[field.name] = _parse_value(field.kind, raw)
        except ValueError:
            kind, msg = _PARSE_ERRORS[field.kind]
            errors.append({"type": kind, "loc": loc, "msg": msg, "input": raw})
    return values, errors


# --- looking at the upload: size and georeferencing, cheaply ------------------------


@dataclasses.dataclass
class ImageInfo:
    kind: str  # "tiff" | "png" | "jpeg" | "unknown"
    width: int = DEFAULT_IMAGE_SIDE_PX
    height: int = DEFAULT_IMAGE_SIDE_PX
    epsg: int | None = None
    origin: tuple[float, float] | None = None  # world x, y of pixel (0, 0)
    pixel_size: tuple[float, float] | None = None


def inspect_image(path: Path) -> ImageInfo:
    """Kind, size and (for a GeoTIFF) EPSG code and pixel grid; defaults when unreadable."""
    with path.open("rb") as f:
        head = f.read(32)
        try:
            if head[:4] in (b"II*\x00", b"MM\x00*"):
                return _inspect_tiff(f, "<" if head[:2] == b"II" else ">", head)
            if head.startswith(b"\x89PNG\r\n\x1a\n"):
                width, height = struct.unpack(">II", head[16:24])
                return ImageInfo("png", width or 1, height or 1)
            if head[:2] == b"\xff\xd8":
                return _inspect_jpeg(f)
        except (struct.error, OSError, KeyError, IndexError):
            pass
    kind = "tiff" if head[:4] in (b"II*\x00", b"MM\x00*") else "unknown"
    return ImageInfo(kind)


def _inspect_tiff(f: Any, order: str, head: bytes) -> ImageInfo:
    f.seek(struct.unpack(order + "I", head[4:8])[0])
    (count,) = struct.unpack(order + "H", f.read(2))
    raw = f.read(12 * count)
    tags = {}
    for i in range(count):
        tag, typ, n, value = struct.unpack(order + "HHI4s", raw[12 * i : 12 * i + 12])
        tags[tag] = (typ, n, value)

    def values(tag: int) -> tuple:
        typ, n, value = tags[tag]
        fmt = {3: "H", 4: "I", 11: "f", 12: "d"}[typ]
        size = struct.calcsize(fmt) * n
        if size > 4:
            f.seek(struct.unpack(order + "I", value)[0])
            value = f.read(size)
        return struct.unpack(order + fmt * n, value[:size])

    info = ImageInfo("tiff", values(256)[0] or 1, values(257)[0] or 1)
    if 34735 in tags:
        keys = values(34735)
        codes = {keys[i]: keys[i + 3] for i in range(4, len(keys) - 3, 4) if keys[i + 1] == 0}
        code = codes.get(3072) or codes.get(2048)
        info.epsg = code if code not in (None, 0, 32767) else None
    if 33550 in tags and 33922 in tags:
        sx, sy = values(33550)[:2]
        i, j, _, x, y, _ = values(33922)[:6]
        info.pixel_size, info.origin = (sx, sy), (x - i * sx, y + j * sy)
    return info


def _inspect_jpeg(f: Any) -> ImageInfo:
    f.seek(2)
    for _ in range(256):
        marker, length = struct.unpack(">xBH", f.read(4))
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">xHH", f.read(5))
            return ImageInfo("jpeg", width or 1, height or 1)
        f.seek(length - 2, 1)
    return ImageInfo("jpeg")


# --- answers: deterministic functions of the upload ---------------------------------


def _regions(digest: bytes, width: int, height: int) -> list[tuple[int, int, int, int, float]]:
    """1-3 boxes (x1, y1, x2, y2, score) in pixels, chosen by the upload's hash."""
    boxes = []
    for i in range(1 + digest[0] % 3):
        a, b, c, d, e = digest[1 + 5 * i : 6 + 5 * i]
        x1, y1 = a * (width - 1) // 510, b * (height - 1) // 510
        x2 = min(width, x1 + 1 + c * width // 512)
        y2 = min(height, y1 + 1 + d * height // 512)
        boxes.append((x1, y1, x2, y2, round(0.5 + e / 510, 4)))
    return boxes


def _to_world(info: ImageInfo, col: float, row: float) -> list[float]:
    if info.origin is None or info.pixel_size is None:
        return [col, row]
    return [info.origin[0] + col * info.pixel_size[0], info.origin[1] - row * info.pixel_size[1]]


def _ring(info: ImageInfo, x1: float, y1: float, x2: float, y2: float) -> list[list[float]]:
    corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)]
    return [_to_world(info, x, y) for x, y in corners]


def _geojson(info: ImageInfo, regions: list) -> dict[str, Any]:
    result: dict[str, Any] = {"type": "FeatureCollection", "name": "output"}
    if info.kind == "tiff":
        urn = f"urn:ogc:def:crs:EPSG::{info.epsg or 4326}"
        result["crs"] = {"type": "name", "properties": {"name": urn}}
    result["features"] = [
        {
            "type": "Feature",
            "properties": {"value": float(n), "score": score},
            "geometry": {"type": "Polygon", "coordinates": [_ring(info, x1, y1, x2, y2)]},
        }
        for n, (x1, y1, x2, y2, score) in enumerate(regions, 1)
    ]
    return result


def _detections(info: ImageInfo, regions: list, *, geo: bool, scored: bool) -> dict[str, Any]:
    items = []
    for n, (x1, y1, x2, y2, score) in enumerate(regions, 1):
        extra = {"score": score} if scored else {"value": n}
        if geo:
            bbox = [float(x1), float(y1), float(x2), float(y2)]
            ring = _ring(info, *bbox)
            items.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                    "properties": {"id": n, **extra, "bbox_pixel": bbox},
                }
            )
        else:
            box = {"bbox": [x1, y1, x2, y2], "width": x2 - x1, "height": y2 - y1}
            items.append({"id": n, **box, **extra})
    if not geo:
        size = {"image_width": info.width, "image_height": info.height}
        return {**size, "num_detections": len(items), "detections": items}
    result = {"type": "FeatureCollection", "features": items, "num_detections": len(items)}
    if info.kind == "tiff" and info.origin is not None:
        result["crs"] = f"EPSG:{info.epsg or 4326}"
    return result


def _png(info: ImageInfo, regions: list) -> bytes:
    width, height = min(info.width, PNG_MAX_SIDE_PX), min(info.height, PNG_MAX_SIDE_PX)
    pixels = bytearray((width + 1) * height)  # each row: filter byte 0, then pixels
    for value, (x1, y1, x2, y2, _) in enumerate(regions, 1):
        left, right = min(x1, width), min(x2, width)
        for row in range(min(y1, height), min(y2, height)):
            start = row * (width + 1) + 1
            pixels[start + left : start + right] = bytes([value]) * (right - left)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(pixels)))
        + chunk(b"IEND", b"")
    )


# --- the "models": cached like samgeo's get_model ----------------------------------


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _weights_present(model_id: str, backend: str, env: Mapping[str, str]) -> bool:
    checkpoint = env.get("SAM3_CHECKPOINT_PATH")
    if backend == "meta" and checkpoint and Path(checkpoint).is_file():
        return True
    home = Path(env.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    hub = Path(env["HF_HUB_CACHE"]) if env.get("HF_HUB_CACHE") else home / "hub"
    snapshots = hub / f"models--{model_id.replace('/', '--')}" / "snapshots"
    return any(snapshots.glob("*/*.pt" if backend == "meta" else "*/config.json"))


class Models:
    """The model cache: one entry per (version, model id, model-shaping settings)."""

    def __init__(self) -> None:
        self.loaded: dict[tuple, None] = {}

    def get(self, switches: Switches, version: str, model_id: str | None, **kw: Any) -> tuple:
        """The cache key, loading the "model" first if needed (raises HttpError)."""
        if version not in DEFAULT_MODEL_IDS:
            detail = f"Invalid model_version '{version}'. Must be one of: {list(DEFAULT_MODEL_IDS)}"
            raise HttpError(400, detail)
        model_id = model_id or DEFAULT_MODEL_IDS[version]
        if model_id not in AVAILABLE_MODELS[version]:
            valid = AVAILABLE_MODELS[version]
            detail = f"Invalid model_id '{model_id}' for {version}. Must be one of: {valid}"
            raise HttpError(400, detail)
        key = (version, model_id, _freeze(kw))
        if key in self.loaded:
            _log("INFO", f"Model cache hit for {key!r}")
            return key
        _log("INFO", f"Loading model {key!r}")
        if version == "sam3":
            self._load_sam3(switches, model_id, kw.get("backend", "meta"))
        self.loaded[key] = None
        return key

    @staticmethod
    def _load_sam3(switches: Switches, model_id: str, backend: str) -> None:
        if backend not in ("meta", "transformers"):
            raise HttpError(400, f"Invalid backend '{backend}'. Choose 'meta' or 'transformers'.")
        if backend == "transformers" and model_id == "facebook/sam3.1":
            raise HttpError(
                400,
                "facebook/sam3.1 is a checkpoint repository and is only supported with "
                "backend='meta'. Use model_id='facebook/sam3' for the Transformers backend.",
            )
        time.sleep(switches.load_s)  # loading blocks the loop in samgeo-api too
        if switches.require_weights and not _weights_present(model_id, backend, os.environ):
            offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE
            raise HttpError(500, HUB_OFFLINE_TEXT if offline else HUB_UNREACHABLE_TEXT)
        if backend == "meta" and not switches.gpu:
            raise HttpError(500, NO_GPU_TEXT)


# --- the application ----------------------------------------------------------------

CONTROL_PATH = "/__standin__/switches"
STATS_PATH = "/__standin__/stats"
_ROUTES = {
    "/health": ("GET",),
    "/models": ("GET", "DELETE"),
    "/openapi.json": ("GET",),
    CONTROL_PATH: ("GET", "POST"),
    STATS_PATH: ("GET",),
    **{path: ("POST",) for path in SEGMENT_ENDPOINTS},
}


def _directive(prompt: str, mode: str, infer_s: float) -> tuple[str, float]:
    """A ``standin:...`` prompt steers this one request."""
    word = prompt.removeprefix("standin:")
    if word in ("crash", "404", "500", "400", "cut"):
        return word, infer_s
    if word.startswith("sleep="):
        try:
            return mode, float(word.removeprefix("sleep="))
        except ValueError:
            raise HttpError(400, f"standin: bad directive {prompt!r}") from None
    return mode, infer_s


class App:
    """Routes requests; segment work runs synchronously, blocking the loop on purpose."""

    def __init__(self, switches: Switches) -> None:
        self.switches = switches
        self.models = Models()
        self.stats = {"requests": 0, "segment_requests": 0, "in_flight": 0}

    async def dispatch(self, request: Request) -> Response:
        allowed = _ROUTES.get(request.path)
        if request.path in SEGMENT_ENDPOINTS and request.method == "POST":
            return await self.segment(request)
        body = await request.read_all(MAX_FIELD_BYTES)
        if allowed is None:
            raise HttpError(404, "Not Found")
        if request.method not in allowed:
            response = Response.json(405, {"detail": "Method Not Allowed"})
            response.headers.append(("allow", ", ".join(allowed)))
            return response
        if request.path == "/health":
            return Response.json(200, {"status": "ok", "version": __version__})
        if request.path == "/models" and request.method == "GET":
            loaded = [list(key) for key in self.models.loaded]
            return Response.json(200, {"models": AVAILABLE_MODELS, "loaded": loaded})
        if request.path == "/models":
            self.models.loaded.clear()
            return Response.json(200, {"status": "cleared"})
        if request.path == "/openapi.json":
            return Response.json(200, openapi_document())
        if request.path == STATS_PATH:
            return Response.json(200, {**self.stats, "pid": os.getpid()})
        if request.method == "POST":
            try:
                changes = json.loads(body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("the body must be a JSON object of switches")
                self.switches.update(changes)
            except ValueError as exc:
                raise HttpError(400, str(exc)) from None
        return Response.json(200, dataclasses.asdict(self.switches))

    async def segment(self, request: Request) -> Response:
        spool = tempfile.mkdtemp(prefix="samgeo-standin-")
        try:
            try:
                form = await read_form(request, spool)
            except BadRequest:
                # FastAPI answers any form-parsing failure with this text; the rest
                # of the body is unread, so the connection cannot be reused.
                response = Response.json(400, {"detail": "There was an error parsing the body"})
                response.close = True
                shutil.rmtree(spool, ignore_errors=True)
                return response
            values, errors = validate_form(SEGMENT_ENDPOINTS[request.path], form)
            if errors:
                response = Response.json(422, {"detail": errors})
            else:
                self.stats["segment_requests"] += 1
                response = self.run_segment(request.path, values, form)
        except BaseException:
            shutil.rmtree(spool, ignore_errors=True)
            raise
        response.cleanup = lambda: shutil.rmtree(spool, ignore_errors=True)
        return response

    def run_segment(self, endpoint: str, values: dict[str, Any], form: Form) -> Response:
        """samgeo-api's endpoint logic: checks, model, blocking inference, answer."""
        switches = self.switches
        output_format = values["output_format"]
        if output_format not in VALID_OUTPUT_FORMATS:
            formats = ", ".join(sorted(VALID_OUTPUT_FORMATS))
            detail = f"Invalid output_format '{output_format}'. Must be one of: {formats}"
            raise HttpError(400, detail)
        mode, infer_s = switches.mode, switches.infer_s
        prompt = values.get("prompt") or ""
        if prompt.startswith("standin:"):
            mode, infer_s = _directive(prompt, mode, infer_s)
        version = values.get("model_version", "sam3")
        if endpoint == "/segment/text":
            version = "sam3"
            shaping = {"backend": values["backend"]}
            shaping["confidence_threshold"] = values["confidence_threshold"]
        elif endpoint == "/segment/predict":
            if values["point_coords"] is None and values["boxes"] is None:
                detail = "At least one of point_coords or boxes must be provided."
                raise HttpError(400, detail)
            for name in ("point_coords", "point_labels", "boxes"):
                try:
                    json.loads(values[name] or "null")
                except json.JSONDecodeError as exc:
                    raise HttpError(400, f"Invalid JSON in prompt fields: {exc}") from None
            shaping = {} if version == "sam3" else {"automatic": False}
        else:
            names = ("points_per_side", "pred_iou_thresh", "stability_score_thresh")
            sam_kwargs = {name: values[name] for name in names}
            shaping = {"sam": {"sam_kwargs": sam_kwargs}, "sam2": sam_kwargs}.get(version, {})
        key = self.models.get(switches, version, values["model_id"], **shaping)
        _log("INFO", f"standin: inference on {endpoint} for {infer_s:.2f} s")
        started = time.monotonic()
        time.sleep(infer_s)  # blocks the event loop, as samgeo-api's model call does
        if mode == "crash":
            for upload in form.files.values():  # tidy, though a real crash would not
                shutil.rmtree(upload.path.parent, ignore_errors=True)
            print(switches.crash_message, file=sys.stderr, flush=True)
            os._exit(1)
        if mode in ("404", "500", "400"):
            detail = {"404": NOT_FOUND_TEXTS[endpoint], "500": switches.detail_500}
            raise HttpError(int(mode), detail.get(mode, switches.detail_400))
        elapsed = time.monotonic() - started
        _log("INFO", f"Segmentation completed in {elapsed:.2f}s (model: {version})")
        response = self.render(endpoint, output_format, form, values, key)
        if mode == "cut":
            response.die_midway = switches.crash_message
        return response

    def render(
        self, endpoint: str, output_format: str, form: Form, values: dict[str, Any], key: tuple
    ) -> Response:
        """The answer in the requested format, a function of the upload's bytes."""
        upload = form.files["file"]
        info = inspect_image(upload.path)
        regions = _regions(bytes.fromhex(upload.sha256), info.width, info.height)
        pacing = {
            "chunks": self.switches.response_chunks,
            "delay_s": self.switches.response_delay_s,
        }
        headers = [("x-standin-file-sha256", upload.sha256)]
        if output_format in ("geotiff", "png"):
            name = "mask.tif" if output_format == "geotiff" else "mask.png"
            headers.append(("content-disposition", f'attachment; filename="{name}"'))
            if output_format == "geotiff":  # the upload itself: answers can be large
                return Response(
                    200, file=upload.path, content_type="image/tiff", headers=headers, **pacing
                )
            return Response(
                200, _png(info, regions), content_type="image/png", headers=headers, **pacing
            )
        if output_format == "geojson":
            content = _geojson(info, regions)
        else:
            geo = output_format == "detections"
            content = _detections(info, regions, geo=geo, scored=endpoint == "/segment/text")
        content["standin"] = {
            "endpoint": endpoint,
            "received": {
                "file_sha256": upload.sha256,
                "file_bytes": upload.size,
                "filename": upload.filename,
                "content_type": upload.content_type,
                "fields": form.fields,
                "part_names": form.part_names,
            },
            "values": {name: value for name, value in values.items() if name != "file"},
            "model": list(key),
            "image": {"kind": info.kind, "width": info.width, "height": info.height},
        }
        return Response.json(200, content, headers=headers, **pacing)


# --- the server: uvicorn's life cycle on one asyncio loop ---------------------------


class _Connection:
    def __init__(self, server: Server, channel: Channel) -> None:
        self.server, self.channel = server, channel
        self.busy = False
        self.closing = False
        self.task: asyncio.Task | None = None

    def shutdown(self) -> None:
        """Close now when idle, else after the answer in progress (like uvicorn)."""
        self.closing = True
        if not self.busy:
            self.channel.close()

    async def run(self) -> None:
        first = True
        try:
            while not self.closing:
                reading = read_request(self.channel)
                try:
                    # uvicorn drops idle keep-alive connections after 5 s, not new ones.
                    timeout_s = None if first else KEEP_ALIVE_TIMEOUT_S
                    request = await asyncio.wait_for(reading, timeout_s)
                except BadRequest:
                    await self._send_invalid()
                    break
                except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                    break
                first = False
                self.busy = True
                keep_alive = await self.server.respond(request)
                self.busy = False
                if not keep_alive:
                    break
        finally:
            self.server.connections.discard(self)
            self.channel.close()

    async def _send_invalid(self) -> None:
        response = Response(400, b"Invalid HTTP request received.", "text/plain; charset=utf-8")
        with contextlib.suppress(ConnectionError):
            await response.send(self.channel, keep_alive=False)


class Server:
    """Binds, serves until SIGINT/SIGTERM, then shuts down gracefully like uvicorn."""

    def __init__(self, app: App, host: str, port: int, *, handle_sigterm: bool) -> None:
        self.app, self.host, self.port = app, host, port
        self.handled = (signal.SIGINT, signal.SIGTERM) if handle_sigterm else (signal.SIGINT,)
        self.connections: set[_Connection] = set()
        self.should_exit = False
        self.force_exit = False
        self.captured: list[int] = []
        self._exit_event: asyncio.Event | None = None

    def handle_exit(self, sig: int) -> None:
        # Only flags: the loop acts on them. While inference blocks the loop this
        # callback itself waits, so the process leaves only after the inference.
        self.captured.append(sig)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True
        if self._exit_event is not None:
            self._exit_event.set()

    async def respond(self, request: Request) -> bool:
        """Answer one request; whether the connection may serve another."""
        stats = self.app.stats
        stats["requests"] += 1
        stats["in_flight"] += 1
        try:
            try:
                response = await self.app.dispatch(request)
            except HttpError as exc:
                response = Response.json(exc.status, {"detail": exc.detail})
            except BadRequest:
                response = Response(400, b"Invalid HTTP request received.", "text/plain")
                response.close = True
            except (ConnectionError, asyncio.IncompleteReadError):
                return False  # the client left mid-request
            except Exception as exc:  # samgeo-api answers any failure with its text
                _log("ERROR", "Exception in ASGI application")
                traceback.print_exc()
                response = Response.json(500, {"detail": str(exc)}, close=True)
            keep_alive = request.keep_alive and not response.close and not self.should_exit
            try:
                await response.send(request.channel, keep_alive=keep_alive)
            except ConnectionError:
                keep_alive = False
            finally:
                if response.cleanup:
                    response.cleanup()
        finally:
            stats["in_flight"] -= 1
        phrase = http.HTTPStatus(response.status).phrase
        line = f'{request.channel.peer} - "{request.method} {request.path} {request.version}"'
        _log("INFO", f"{line} {response.status} {phrase}", stream=sys.stdout)
        return keep_alive

    def _open(self, channel: Channel) -> None:
        if self.should_exit:
            channel.close()
            return
        connection = _Connection(self, channel)
        self.connections.add(connection)
        # Held here: the loop keeps only weak references to tasks.
        connection.task = asyncio.get_running_loop().create_task(connection.run())

    async def serve(self, *, exit_after_s: float | None, crash_message: str) -> int:
        """Run until told to stop; the exit status (1 when the port cannot be bound)."""
        loop = asyncio.get_running_loop()
        self._exit_event = asyncio.Event()
        for sig in self.handled:
            try:
                loop.add_signal_handler(sig, self.handle_exit, sig)
            except NotImplementedError:  # Windows: a plain handler that hops onto the loop
                signal.signal(sig, lambda s, _: loop.call_soon_threadsafe(self.handle_exit, s))
        _log("INFO", f"Started server process [{os.getpid()}]")
        _log("INFO", "Waiting for application startup.")
        _log("INFO", "Application startup complete.")
        try:
            server = await loop.create_server(lambda: Channel(self._open), self.host, self.port)
        except OSError as exc:
            _log("ERROR", str(exc))
            _log("INFO", "Waiting for application shutdown.")
            _log("INFO", "Application shutdown complete.")
            return 1
        port = server.sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        _log("INFO", f"Uvicorn running on http://{host}:{port} (Press CTRL+C to quit)")
        if exit_after_s is not None:
            loop.call_later(exit_after_s, _die, crash_message)
        await self._exit_event.wait()
        _log("INFO", "Shutting down")
        server.close()
        for connection in list(self.connections):
            connection.shutdown()
        await asyncio.sleep(0.1)
        if self.connections and not self.force_exit:
            _log("INFO", "Waiting for connections to close. (CTRL+C to force quit)")
            while self.connections and not self.force_exit:
                self._exit_event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._exit_event.wait(), 0.1)
        if not self.force_exit:
            _log("INFO", "Waiting for application shutdown.")
            _log("INFO", "Application shutdown complete.")
        _log("INFO", f"Finished server process [{os.getpid()}]")
        return 0


def _die(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    os._exit(1)


# --- start-up: the slow, failing or hanging start of a heavy Python app -------------

_CHILDREN: list[subprocess.Popen] = []  # referenced so they are never reaped early


def _start_phase(env: Mapping[str, str]) -> None:
    """Apply the start-up switches; returns when the server should bind."""
    if env.get("STANDIN_SPAWN_CHILD", "").lower() in _TRUE:
        code = f"import time; time.sleep({CHILD_LIFETIME_S})"
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _CHILDREN.append(child)
        print(f"standin child pid {child.pid}", file=sys.stderr, flush=True)
    if env.get("STANDIN_FAIL_START"):
        print(env["STANDIN_FAIL_START"], file=sys.stderr, flush=True)
        sys.exit(1)
    if env.get("STANDIN_HANG_START", "").lower() in _TRUE:
        while True:
            time.sleep(3600)
    delay_s = float(env.get("STANDIN_START_DELAY_S") or 0)
    progress = env.get("STANDIN_START_PROGRESS", "none")
    deadline = time.monotonic() + delay_s
    next_line = time.monotonic()
    while (left := deadline - time.monotonic()) > 0:
        if progress == "cpu":
            sum(range(10_000))
        elif progress == "output" and time.monotonic() >= next_line:
            print(f"standin: importing modules, {left:.1f} s to go", file=sys.stderr, flush=True)
            next_line += START_PROGRESS_INTERVAL_S
        elif progress == "output":
            time.sleep(max(0.0, min(left, next_line - time.monotonic())))
        else:  # no output, no CPU: a stalled start
            time.sleep(min(left, START_PROGRESS_INTERVAL_S))


def main(argv: Sequence[str] | None = None) -> None:
    """The ``samgeo-api`` console script: same flags as samgeo-api 1.4.2."""
    parser = argparse.ArgumentParser(description="Run the samgeo REST API server.")
    parser.add_argument("--host", default="0.0.0.0", help="Host to bind to (default: 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8000, help="Port (default: 8000)")
    parser.add_argument("--reload", action="store_true", help="Accepted; does nothing here")
    parser.add_argument("--preload", default=None, help="e.g. 'sam3:facebook/sam3'")
    args = parser.parse_args(argv)
    env = os.environ
    ignore_sigterm = env.get("STANDIN_IGNORE_SIGTERM", "").lower() in _TRUE
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        switches = Switches.from_environ(env)
        exit_after = env.get("STANDIN_EXIT_AFTER_S")
        exit_after_s = float(exit_after) if exit_after else None
    except ValueError as exc:
        print(f"samgeo-standin: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    _start_phase(env)
    app = App(switches)
    if args.preload:
        if ":" not in args.preload:
            parser.error(
                "Invalid --preload format. "
                "Expected 'model_version:model_id', e.g. 'sam2:sam2-hiera-large'"
            )
        version, model_id = args.preload.split(":", 1)
        try:
            app.models.get(switches, version, model_id)
        except HttpError as exc:
            print("Traceback (most recent call last):", file=sys.stderr)
            print('  File "samgeo/api.py", line 1006, in main', file=sys.stderr)
            print(f"fastapi.exceptions.HTTPException: {exc.status}: {exc.detail}", file=sys.stderr)
            sys.exit(1)
    server = Server(app, args.host, args.port, handle_sigterm=not ignore_sigterm)
    crash_message = env.get("STANDIN_CRASH_MESSAGE", switches.crash_message)
    status = asyncio.run(server.serve(exit_after_s=exit_after_s, crash_message=crash_message))
    if status:
        sys.exit(status)
    # Like uvicorn: after a graceful stop, re-raise the signal so the exit status
    # says what stopped the process (SIGTERM: killed by 15; SIGINT: exit 0).
    try:
        for sig in reversed(server.captured):
            signal.raise_signal(sig)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
