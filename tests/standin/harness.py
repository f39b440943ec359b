"""Run the samgeo-api stand-in as a real process, and make inputs for it.

``start_standin()`` spawns ``samgeo_standin.py`` (or any ``samgeo-api``-like
command) on a loopback port and returns once ``GET /health`` answers, waiting
on that condition with a deadline. Output goes to files, never to pipes: a
chatty server writing into a full pipe would block and look hung.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

STANDIN_SCRIPT = Path(__file__).with_name("samgeo_standin.py")
HOST = "127.0.0.1"
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.02
REQUEST_TIMEOUT_S = 10.0
SWITCHES_PATH = "/__standin__/switches"
STATS_PATH = "/__standin__/stats"
PORT_ATTEMPTS = 3


class StandinError(RuntimeError):
    """The stand-in did not start, or did not do what a helper waited for."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def standin_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``STANDIN_*`` switches, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("STANDIN_")}
    base["PYTHONUNBUFFERED"] = "1"
    base.update(env or {})
    return base


class StandinProcess:
    """A running stand-in (or installed ``samgeo-api``) and ways to steer it."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_dir: Path) -> None:
        self.proc = proc
        self.port = port
        self.host = HOST
        self._log_dir = log_dir

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    # -- output
    def stdout_text(self) -> str:
        return (self._log_dir / "stdout.log").read_text(errors="replace")

    def stderr_text(self) -> str:
        return (self._log_dir / "stderr.log").read_text(errors="replace")

    def mark(self) -> int:
        """Where stderr ends now; pass it to ``wait_for_output(since=...)``."""
        return len(self.stderr_text())

    def wait_for_output(self, text: str, *, since: int = 0, timeout_s: float = 10.0) -> str:
        """Wait until ``text`` appears on stderr after offset ``since``; stderr so far."""
        deadline = time.monotonic() + timeout_s
        while True:
            output = self.stderr_text()
            if text in output[since:]:
                return output
            if time.monotonic() > deadline:
                tail = "\n".join(output.splitlines()[-10:])
                raise StandinError(f"{text!r} not on stderr after {timeout_s} s; tail:\n{tail}")
            time.sleep(POLL_INTERVAL_S)

    # -- HTTP
    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> tuple[int, bytes]:
        """One request on a fresh connection: (status, body)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status != 200:
            raise StandinError(f"GET {path} answered {status}: {body[:200]!r}")
        return json.loads(body)

    def switches(self) -> dict[str, Any]:
        return self.get_json(SWITCHES_PATH)

    def set_switches(self, **changes: Any) -> dict[str, Any]:
        """Change run-time switches (infer_s, mode, gpu, ...); all switches after."""
        body = json.dumps(changes).encode()
        status, answer = self.request(
            "POST", SWITCHES_PATH, body, {"content-type": "application/json"}
        )
        if status != 200:
            raise StandinError(f"switches {changes} refused ({status}): {answer!r}")
        return json.loads(answer)

    def stats(self) -> dict[str, Any]:
        return self.get_json(STATS_PATH)

    # -- life cycle
    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Return once GET /health answers 200; raise if the process exits first."""
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.proc.poll()
            if code is not None:
                tail = "\n".join(self.stderr_text().splitlines()[-10:])
                raise StandinError(f"stand-in exited with {code} before it was ready:\n{tail}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise StandinError(f"stand-in not ready after {timeout_s} s (pid {self.pid})")
            with contextlib.suppress(OSError):
                if self.request("GET", "/health", timeout_s=min(left, 1.0))[0] == 200:
                    return
            time.sleep(POLL_INTERVAL_S)

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        return self.proc.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; also kills anything left in its
        process group (grandchildren). Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)
        if hasattr(os, "killpg"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def close(self) -> None:
        """Stop it and remove its log files."""
        self.stop()
        shutil.rmtree(self._log_dir, ignore_errors=True)

    def __enter__(self) -> StandinProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def spawn_standin(
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    command: Sequence[str] | None = None,
) -> StandinProcess:
    """Start the stand-in (or ``command``, e.g. an installed ``samgeo-api``) with
    ``--host 127.0.0.1 --port PORT`` appended; does not wait for it."""
    port = port or free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="standin-logs-"))
    env = dict(env or {})
    if "TMPDIR" not in env:  # its spooled uploads then go when close() removes log_dir
        (log_dir / "tmp").mkdir()
        env["TMPDIR"] = str(log_dir / "tmp")
    argv = [*(command or [sys.executable, str(STANDIN_SCRIPT)])]
    argv += ["--host", HOST, "--port", str(port), *args]
    with (log_dir / "stdout.log").open("wb") as out, (log_dir / "stderr.log").open("wb") as err:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=standin_env(env),
            start_new_session=True,  # its own process group: stop() can reap grandchildren
        )
    return StandinProcess(proc, port, log_dir)


def start_standin(
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    ready_timeout_s: float = READY_TIMEOUT_S,
    command: Sequence[str] | None = None,
) -> StandinProcess:
    """Spawn the stand-in and wait until GET /health answers (raises StandinError)."""
    for attempt in range(PORT_ATTEMPTS):
        process = spawn_standin(port=port, env=env, args=args, command=command)
        try:
            process.wait_ready(ready_timeout_s)
            return process
        except StandinError:
            # A port picked by free_port() can be taken before the child binds it.
            lost_race = port is None and "address already in use" in process.stderr_text()
            process.close()
            if not lost_race or attempt == PORT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


# --- inputs: small images the stand-in (and samgeo) can read -----------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_png(width: int, height: int) -> bytes:
    """A valid grey PNG of the given size."""
    rows = b"".join(b"\x00" + bytes((x * 7 + y) % 256 for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + (_png_chunk(b"IEND", b""))
    )


def make_jpeg_header(width: int, height: int) -> bytes:
    """The first bytes of a baseline JPEG (SOI, APP0, SOF0): enough to read its size."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def make_geotiff(
    width: int,
    height: int,
    *,
    epsg: int | None = None,
    origin: tuple[float, float] | None = None,
    pixel_size: tuple[float, float] = (1.0, 1.0),
    geographic: bool = False,
) -> bytes:
    """A little-endian 8-bit grey TIFF; with ``origin`` a pixel grid
    (ModelPixelScale + ModelTiepoint), with ``epsg`` a GeoKeyDirectory naming it
    (ProjectedCSTypeGeoKey, or GeographicTypeGeoKey when ``geographic``)."""
    pixels = bytes((x + y) % 256 for y in range(height) for x in range(width))
    extra: list[tuple[int, int, list[float] | list[int]]] = []
    if origin is not None:
        extra.append((33550, 12, [pixel_size[0], pixel_size[1], 0.0]))
        extra.append((33922, 12, [0.0, 0.0, 0.0, origin[0], origin[1], 0.0]))
    if epsg is not None:
        key = 2048 if geographic else 3072
        model = 2 if geographic else 1
        extra.append((34735, 3, [1, 1, 0, 2, 1024, 0, 1, model, key, 0, 1, epsg]))
    tags: list[tuple[int, int, list]] = [
        (256, 3, [width]),
        (257, 3, [height]),
        (258, 3, [8]),
        (259, 3, [1]),
        (262, 3, [1]),
        (273, 4, [0]),  # strip offset, patched below
        (277, 3, [1]),
        (278, 3, [height]),
        (279, 4, [len(pixels)]),
        *extra,
    ]
    ifd_size = 2 + 12 * len(tags) + 4
    data_at = 8 + ifd_size
    blobs = b""
    entries = b""
    for tag, typ, values in tags:
        fmt = {3: "H", 4: "I", 12: "d"}[typ]
        raw = struct.pack("<" + fmt * len(values), *values)
        if len(raw) <= 4:
            entries += struct.pack("<HHI", tag, typ, len(values)) + raw.ljust(4, b"\x00")
        else:
            entries += struct.pack("<HHII", tag, typ, len(values), data_at + len(blobs))
            blobs += raw
    pixel_at = data_at + len(blobs)
    entries = entries.replace(
        struct.pack("<HHII", 273, 4, 1, 0), struct.pack("<HHII", 273, 4, 1, pixel_at)
    )
    ifd = struct.pack("<H", len(tags)) + entries + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + blobs + pixels
