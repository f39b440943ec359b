"""The routes of ``/ml/jobs``: create (multipart: the raster, ``mode``, the fields of
``/ml/segment/<mode>``, ``tile_size`` and ``overlap``), state, events, result, cancel."""

from __future__ import annotations

from typing import Any, BinaryIO

from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response

from geolibre_sidecar.errors import Conflict, InvalidField, NotFound, PayloadTooLarge
from geolibre_sidecar.jobs.manager import JobManager
from geolibre_sidecar.jobs.store import Job, valid_job_id
from geolibre_sidecar.multipart_guard import MultipartGuard, boundary_of
from geolibre_sidecar.segment_fields import ENDPOINT_FIELDS, FormField, check_value, field_table
from geolibre_sidecar.settings import MIB
from geolibre_sidecar.sse import event_stream, last_event_id

# SAM 3 sees 1008 px: a tile that size is segmented at full resolution.
DEFAULT_TILE = 1008
DEFAULT_OVERLAP = 128
MIN_TILE, MAX_TILE = 64, 8192
JOB_FIELDS = ("mode", "tile_size", "overlap")


class JobUpload(MultipartGuard):
    """The multipart guard over every mode's fields at once (the mode may come after
    them), writing the file part to ``sink`` as it streams."""

    def __init__(self, boundary: bytes, sink: BinaryIO) -> None:
        super().__init__(boundary, "text")
        self.endpoint = "jobs"  # checked per mode in parse_fields, once the mode is known
        names = {f.name for fields in ENDPOINT_FIELDS.values() for f in fields}
        self._fields = {
            name: FormField(name, "file", required=True, what="the raster to segment")
            if name == "file"
            else FormField(name, "string")
            for name in (*names, *JOB_FIELDS)
        }
        self._sink = sink

    def _consume(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if part is not None and part.filename is not None and part.known:
            self._sink.write(data[start:end])
            part.size += end - start
            return
        super()._consume(data, start, end)


def _int(fields: dict[str, str], name: str, default: int) -> int:
    raw = fields.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise InvalidField(f"Field '{name}' must be a whole number of pixels, not {raw[:40]!r}.")
    return int(raw)


def parse_fields(raw: dict[str, str]) -> tuple[str, dict[str, str], int, int]:
    """mode, the segment fields for that mode (checked as /ml/segment checks them),
    tile size and overlap."""
    mode = raw.get("mode", "").strip()
    if mode not in ENDPOINT_FIELDS:
        raise InvalidField("Field 'mode' must be text, automatic or predict.")
    table = field_table(mode)
    fields = {}
    for name, value in raw.items():
        spec = table.get(name)
        if spec is None or spec.type == "file":
            continue
        if problem := check_value(spec, value):
            raise InvalidField(problem)
        fields[name] = value
    for spec in table.values():
        if spec.required and spec.type != "file" and not fields.get(spec.name, "").strip():
            raise InvalidField(f"Field '{spec.name}' is required ({spec.what}).")
    if mode == "predict" and not (fields.get("point_coords") or fields.get("boxes")):
        raise InvalidField("Send point_coords or boxes with a predict job.")
    fields["output_format"] = "geojson"  # the merge reads GeoJSON
    tile = _int(raw, "tile_size", DEFAULT_TILE)
    overlap = _int(raw, "overlap", DEFAULT_OVERLAP)
    if not MIN_TILE <= tile <= MAX_TILE:
        raise InvalidField(f"tile_size must be from {MIN_TILE} to {MAX_TILE} pixels.")
    if overlap * 2 > tile:
        raise InvalidField("overlap must be at most half of tile_size.")
    return mode, fields, tile, overlap


async def create_job(request: Request) -> Response:
    app_state = request.app.state
    manager: JobManager = app_state.job_manager
    if manager.python() is None:
        raise Conflict(
            "Tiled jobs need the model environment (it cuts and merges the tiles); "
            "install it first."
        )
    boundary = boundary_of(request.headers.get("content-type", ""))
    limit = manager.settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"The upload is larger than {limit // MIB} MB (GEOLIBRE_ML_MAX_UPLOAD_MB).",
            headers={"Connection": "close"},
        )
    job = manager.store.create("text", {}, DEFAULT_TILE, DEFAULT_OVERLAP)
    try:
        with job.raster.open("wb") as sink:
            guard = JobUpload(boundary, sink)
            received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise PayloadTooLarge(f"The upload is larger than {limit // MIB} MB.")
                guard.feed(chunk)
            summary = guard.finish()
        mode, fields, tile, overlap = parse_fields(summary.fields)
        here = app_state.proxy.sam3.current()
        if mode == "text" and here.default and not fields.get("backend", "").strip():
            fields["backend"] = here.default
        for refusal in (
            here.refusal(mode, fields),
            app_state.backend.weights_refusal(mode, fields),
        ):
            if refusal is not None:
                raise refusal
    except ClientDisconnect:
        manager.store.delete(job)
        return Response(status_code=499)
    except BaseException:
        manager.store.delete(job)  # a refused request leaves nothing behind
        raise
    job.mode, job.fields, job.tile_size, job.overlap = mode, fields, tile, overlap
    job.save()
    job.add_event({"event": "state", "state": "queued"})
    manager.start(job)
    return JSONResponse(manager.snapshot(job), status_code=202)


def _job(request: Request) -> Job:
    manager: JobManager = request.app.state.job_manager
    job_id = request.path_params["job_id"]
    job = manager.jobs.get(job_id) if valid_job_id(job_id) else None
    if job is None:
        raise NotFound(f"There is no job {job_id[:64]!r} (it may have been deleted).")
    return job


async def list_jobs(request: Request) -> Response:
    manager: JobManager = request.app.state.job_manager
    jobs = [manager.snapshot(job) for job in manager.jobs.values()]
    return JSONResponse(
        {"jobs": jobs, "backends": manager.pool.snapshot(), "worker": manager.worker.snapshot()}
    )


async def job_state(request: Request) -> Response:
    return JSONResponse(request.app.state.job_manager.snapshot(_job(request)))


async def job_events(request: Request) -> Response:
    manager: JobManager = request.app.state.job_manager
    return event_stream(manager.events(_job(request), last_event_id(request)))


async def job_result(request: Request) -> Response:
    job = _job(request)
    if job.state != "succeeded":
        raise Conflict(f"The job has no result: it is {job.state}.")
    return FileResponse(
        job.result_path, media_type="application/geo+json", filename=f"{job.id}.geojson"
    )


async def delete_job(request: Request) -> Response:
    """Cancel a running job; delete a finished one (its result too)."""
    manager: JobManager = request.app.state.job_manager
    job = _job(request)
    if job.running:
        await manager.cancel(job)
        return JSONResponse(manager.snapshot(job))
    await manager.delete(job)
    body: dict[str, Any] = {"id": job.id, "deleted": True}
    return JSONResponse(body)
