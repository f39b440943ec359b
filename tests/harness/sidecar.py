"""Start the real ``geolibre-sidecar`` launcher as a subprocess and read its handshake."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.harness.processes import MARKER_VAR

READY_TIMEOUT_S = 15.0


def launcher_path() -> str:
    exe = "geolibre-sidecar.exe" if sys.platform == "win32" else "geolibre-sidecar"
    return str(Path(sys.executable).with_name(exe))


def base_env(home: Path, marker: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOLIBRE_", "HF_", "UV_"))}
    env.update({"GEOLIBRE_ML_HOME": str(home), MARKER_VAR: marker, "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


@dataclass
class Sidecar:
    proc: subprocess.Popen[bytes]
    ready: dict[str, Any]
    stderr_path: Path
    extra_lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.ready["url"]

    @property
    def token(self) -> str:
        return self.ready["token"]

    @property
    def pid(self) -> int:
        return self.ready["pid"]

    def client(self, *, token: str | None = None, timeout_s: float = 30.0) -> httpx.Client:
        headers = {"X-GeoLibre-Token": self.token if token is None else token}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s, trust_env=False)

    def status(self) -> dict[str, Any]:
        with self.client() as client:
            response = client.get("/ml/status")
            response.raise_for_status()
            return response.json()

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stdout_rest(self) -> bytes:
        """Whatever the sidecar wrote to stdout after the ready line (must be nothing)."""
        assert self.proc.stdout is not None
        return self.proc.stdout.read() or b""

    def descendants(self) -> list[int]:
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def terminate(self, timeout_s: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def close(self) -> None:
        """Stop it if needed and release our ends of its pipes."""
        try:
            if self.proc.poll() is None:
                self.terminate()
        finally:
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()


def start_sidecar(
    home: Path,
    *,
    marker: str,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    cmd: list[str] | None = None,
    timeout_s: float = READY_TIMEOUT_S,
    stdin: int = subprocess.PIPE,
    start_new_session: bool = True,
) -> Sidecar:
    """Spawn the launcher and wait (with a deadline) for its one JSON ready line."""
    stderr_path = home / f"sidecar-stderr-{time.monotonic_ns()}.log"
    home.mkdir(parents=True, exist_ok=True)
    stderr_file = stderr_path.open("wb")
    proc = subprocess.Popen(
        cmd or [launcher_path(), *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        env=base_env(home, marker, env),
        start_new_session=start_new_session,
    )
    stderr_file.close()
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not selector.select(remaining):
            proc.kill()
            raise AssertionError(
                f"no ready line within {timeout_s:g} s; stderr:\n{stderr_path.read_text()}"
            )
        byte = os.read(proc.stdout.fileno(), 1)
        if not byte:
            proc.wait()
            raise AssertionError(
                f"sidecar exited ({proc.returncode}) before its ready line; stderr:\n"
                f"{stderr_path.read_text()}"
            )
        line += byte
    selector.close()
    return Sidecar(proc=proc, ready=json.loads(line), stderr_path=stderr_path)


# A stand-in for the desktop app: it spawns the sidecar with --parent-pid (and a
# stdin pipe), relays the ready line, then idles until it is killed.
_APP_SCRIPT = (
    "import os, subprocess, sys, time\n"
    "p = subprocess.Popen([sys.argv[1], '--parent-pid', str(os.getpid())],\n"
    "                     stdout=subprocess.PIPE, stdin=subprocess.PIPE)\n"
    "sys.stdout.write(p.stdout.readline().decode()); sys.stdout.flush()\n"
    "time.sleep(600)\n"
)


def start_app_with_sidecar(
    home: Path, *, marker: str, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """A fake desktop app process and the ready line of the sidecar it spawned."""
    app = subprocess.Popen(
        [sys.executable, "-c", _APP_SCRIPT, launcher_path()],
        stdout=subprocess.PIPE,
        env=base_env(home, marker, env),
    )
    assert app.stdout is not None
    return app, json.loads(app.stdout.readline())


def kill_app(app: subprocess.Popen[bytes]) -> None:
    app.kill()
    app.wait()
    if app.stdout is not None:
        app.stdout.close()
