"""The one-click install behind ``/ml/backend/install`` (or, with ``model``, the
fetch of one model's weights: ``geolibre-ml install --model``).

The install runs as a child process (``python -m geolibre_env install --events``)
so a cancel can stop it and everything it started as one tree, and the
sidecar stays responsive. Its JSON progress lines become the job's events:
kept for ``GET /ml/backend/install``, streamed as server-sent events, and
summarised in ``/ml/status``. The token goes to the child on stdin, never on
its command line or in its environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from geolibre_env.errors import GeoLibreError
from geolibre_env.install import protocol
from geolibre_env.process_tree import signal_group
from geolibre_env.redact import redact, register_secret
from geolibre_env.spec import load_spec
from geolibre_env.weights import known_models
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from geolibre_sidecar.errors import Conflict, InvalidField
from geolibre_sidecar.settings import SidecarSettings
from geolibre_sidecar.sse import MAX_EVENTS, event_stream, follow, last_event_id, notify

log = logging.getLogger("geolibre.install")

CANCEL_GRACE_S = 10.0
ALLOWED_FIELDS = {"backend", "token", "checkpoint", "bundle", "weights", "force", "build", "model"}
MAX_TEXT_CHARS = 4096  # longer than any real path, short enough to echo in a message
# A torch build name: cpu, cu126, rocm6.3, ... (never an option, never a path).
BUILD_NAME = re.compile(r"[a-z0-9][a-z0-9._+]{0,31}", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class InstallJob:
    """One run of the installer and everything it said."""

    started_at: float = field(default_factory=time.time)
    state: str = "running"  # running | succeeded | incomplete | failed | cancelled
    finished_at: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    pid: int | None = None
    cancel_requested: bool = False
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def last_progress(self) -> dict[str, Any]:
        for event in reversed(self.events):
            if event.get("event") == protocol.EVENT_PROGRESS:
                return event
        return {}


def _text(body: dict[str, Any], name: str, what: str) -> str | None:
    """The field as clean text: a string the installer's command line can carry unchanged."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidField(f"{name} must be {what}.")
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidField(f"{name} is longer than {MAX_TEXT_CHARS} characters; it must be {what}.")
    if _CONTROL.search(value):
        raise InvalidField(f"{name} contains a control character (such as NUL); it must be {what}.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidField(f"{name} is not valid Unicode text; it must be {what}.") from None
    return value


def _path(body: dict[str, Any], name: str, what: str) -> str | None:
    value = _text(body, name, what)
    # Absolute only: the sidecar's working folder means nothing to the app, and a
    # value starting with "-" can then never look like an option.
    if value is not None and not os.path.isabs(value):
        raise InvalidField(f"{name} must be an absolute path: {what}.")
    return value


def parse_request(body: Any, models: Sequence[str] = ()) -> tuple[list[str], str | None]:
    """The installer's arguments and the token, from the request's JSON body; ``models``:
    those a ``model`` field may name (the spec's)."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidField("The install request body must be a JSON object.")
    unknown = set(body) - ALLOWED_FIELDS
    if unknown:
        raise InvalidField(
            # repr, cut short: a key may be huge or hold characters JSON cannot carry.
            f"Unknown install option(s): {', '.join(repr(k[:40]) for k in sorted(unknown)[:5])}; "
            f"expected {', '.join(sorted(ALLOWED_FIELDS))}."
        )
    args: list[str] = []
    backend = body.get("backend")
    if backend is not None:
        if backend not in protocol.SAM3_IMPLEMENTATIONS:
            raise InvalidField("backend must be 'meta' or 'transformers'.")
        args += [protocol.OPT_BACKEND, backend]
    # Every value travels as --option=value: whatever it holds, it stays a value.
    build_what = "a torch build name such as 'cpu' or 'cu126'"
    if (build := _text(body, "build", build_what)) is not None:
        if not BUILD_NAME.fullmatch(build):
            raise InvalidField(f"build must be {build_what}, not {build[:40]!r}.")
        args.append(f"{protocol.OPT_BUILD}={build}")
    if checkpoint := _path(body, "checkpoint", "the path of a local sam3.pt file"):
        args.append(f"{protocol.OPT_CHECKPOINT}={checkpoint}")
    bundle_what = "the path of an offline bundle made by `geolibre-ml bundle export`"
    if bundle := _path(body, "bundle", bundle_what):
        args.append(f"{protocol.OPT_FROM}={bundle}")
    if (model := _text(body, "model", "a model id such as 'facebook/sam3.1'")) is not None:
        if model not in models:
            raise InvalidField(f"model must be one of {', '.join(models)}, not {model[:60]!r}.")
        if body.get("weights") is False:
            raise InvalidField("model asks for that model's weights, so weights cannot be false.")
        args.append(f"{protocol.OPT_MODEL}={model}")
    for flag, name, when in (
        (protocol.OPT_NO_WEIGHTS, "weights", False),
        (protocol.OPT_FORCE, "force", True),
    ):
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            raise InvalidField(f"{name} must be true or false.")
        if value is when:
            args.append(flag)
    token = _text(body, "token", "a Hugging Face access token (a string)")
    if token:
        register_secret(token.strip())
        args.append(protocol.OPT_TOKEN_STDIN)
    return args, token.strip() if token else None


class InstallJobs:
    """Runs at most one install at a time and remembers the last one."""

    def __init__(
        self, settings: SidecarSettings, on_success: Callable[[], Awaitable[None]]
    ) -> None:
        self.settings = settings
        self.on_success = on_success
        self.job: InstallJob | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()

    def snapshot(self) -> dict[str, Any] | None:
        job = self.job
        if job is None:
            return None
        progress = job.last_progress()
        return {
            "state": job.state,
            "running": job.running,
            "phase": progress.get("phase"),
            "message": progress.get("message"),
            "fraction": progress.get("fraction"),
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "pid": job.pid,
            "events": len(job.events),
            "result": job.result,
            "error": job.error,
        }

    async def start(self, body: Any) -> dict[str, Any]:
        # The spec is read only for a request that names a model.
        named = isinstance(body, dict) and body.get("model") is not None
        models = known_models(load_spec(self.settings.env.spec_path)) if named else ()
        args, token = parse_request(body, models)
        if self._starting.locked() or (self.job is not None and self.job.running):
            raise Conflict("An install is already running; follow it or cancel it first.")
        async with self._starting:
            return await self._spawn(args, token)

    async def _spawn(self, args: list[str], token: str | None) -> dict[str, Any]:
        argv = [sys.executable, "-m", "geolibre_env", "install", protocol.OPT_EVENTS,
                protocol.OPT_PARENT_PID, str(os.getpid()), *args]  # fmt: skip
        env = dict(self.settings.env.environ)
        env.pop("GEOLIBRE_SIDECAR_TOKEN", None)
        # The job exists only once its process does: a failed start leaves nothing running.
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=sys.platform != "win32",
            )
        except (OSError, ValueError) as exc:
            # Our fault, not the request's (which was checked above): a 500 that says so.
            raise GeoLibreError(f"The installer could not be started: {exc}.") from None
        self.job = job = InstallJob()
        self._proc = proc
        job.pid = proc.pid
        assert proc.stdin is not None
        if token:
            proc.stdin.write(token.encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        proc.stdin.close()
        log.info("install started (pid %d): %s", proc.pid, " ".join(args) or "defaults")
        self._reader = asyncio.create_task(self._follow(job, proc), name="install-follow")
        return self.snapshot() or {}

    async def _follow(self, job: InstallJob, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        stderr_task = asyncio.create_task(proc.stderr.read())
        async for raw in proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if event.get("event") == protocol.EVENT_RESULT:
                job.result = event
            elif event.get("event") == protocol.EVENT_ERROR:
                job.error = {"detail": event.get("detail"), "hint": event.get("hint")}
            await self._add(job, event)
        code = await proc.wait()
        stderr = (await stderr_task).decode("utf-8", "replace")
        if job.cancel_requested or code == protocol.EXIT_CANCELLED:
            # Whatever the installer said last (its uv was killed too), the cause is the cancel.
            job.state = "cancelled"
            job.error = {
                "detail": "The install was cancelled.",
                "hint": "Nothing that worked before was changed; install again to resume.",
            }
        elif code == protocol.EXIT_OK:
            job.state = "succeeded"
        elif code == protocol.EXIT_PARTIAL:
            job.state = "incomplete"  # environment installed, weights missing
        else:
            job.state = "failed"
            if job.error is None:
                tail = redact("\n".join(stderr.strip().splitlines()[-5:]))
                job.error = {"detail": f"The installer exited with code {code}. {tail}".strip()}
        job.finished_at = time.time()
        log.info("install finished: %s", job.state)
        await self._add(job, {"event": "end", "state": job.state, "error": job.error})
        if job.state in ("succeeded", "incomplete"):
            await self.on_success()

    async def _add(self, job: InstallJob, event: dict[str, Any]) -> None:
        event["id"] = len(job.events) + 1
        job.events.append(event)
        if len(job.events) > MAX_EVENTS:  # keep the first events and the recent ones
            del job.events[100:200]
        await notify(job)

    async def cancel(self) -> dict[str, Any]:
        job, proc = self.job, self._proc
        if job is None or not job.running or proc is None:
            raise Conflict("No install is running.")
        job.cancel_requested = True
        signal_group(proc, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self._reader or asyncio.sleep(0)), CANCEL_GRACE_S)
        except TimeoutError:
            signal_group(proc, signal.SIGKILL)
            await asyncio.wait_for(asyncio.shield(self._reader or asyncio.sleep(0)), CANCEL_GRACE_S)
        return self.snapshot() or {}

    async def events(self, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Events after ``after``, then live ones until the job ends."""
        job = self.job
        if job is None:
            yield {"event": "end", "state": "none", "id": 0}
            return
        async for event in follow(job, after):
            yield event

    async def aclose(self) -> None:
        if self.job is not None and self.job.running:
            with contextlib.suppress(Exception):
                await self.cancel()


async def start_install(request: Request) -> Response:
    try:
        body = await request.json() if await request.body() else {}
    except RecursionError:
        raise InvalidField("The install request body is nested too deeply to be JSON.") from None
    except ValueError:
        raise InvalidField("The install request body must be JSON.") from None
    jobs: InstallJobs = request.app.state.install_jobs
    return JSONResponse(await jobs.start(body), status_code=202)


async def install_state(request: Request) -> Response:
    jobs: InstallJobs = request.app.state.install_jobs
    return JSONResponse(jobs.snapshot() or {"state": "none", "running": False})


async def cancel_install(request: Request) -> Response:
    jobs: InstallJobs = request.app.state.install_jobs
    return JSONResponse(await jobs.cancel())


async def install_events(request: Request) -> Response:
    jobs: InstallJobs = request.app.state.install_jobs
    return event_stream(jobs.events(last_event_id(request)))
