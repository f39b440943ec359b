"""tauri-driver (WebKitWebDriver underneath) and a small W3C WebDriver client over httpx.

tauri-driver is installed with cargo into ``~/.cache/geolibre-ml-tests/cargo-bin``
(outside the clone, so later runs are warm). The app it launches inherits
tauri-driver's environment: that is how a test hands the app its settings.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.harness.waiting import wait_until

CARGO_ROOT = Path.home() / ".cache" / "geolibre-ml-tests" / "cargo-bin"
# A cold `cargo install` on two cores; a warm one only checks the binary.
INSTALL_TIMEOUT_S = 1200
START_TIMEOUT_S = 30.0
# The W3C key that marks an element reference in a response.
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"


def tauri_driver() -> tuple[Path, float]:
    """tauri-driver's path (installed with cargo when missing) and the install's seconds."""
    binary = CARGO_ROOT / "bin" / "tauri-driver"
    if binary.is_file():
        return binary, 0.0
    started = time.monotonic()
    command = ["cargo", "install", "tauri-driver", "--locked", "--root", str(CARGO_ROOT)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    assert out.returncode == 0, f"cargo install tauri-driver failed:\n{out.stderr[-3000:]}"
    return binary, time.monotonic() - started


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_tauri_driver(env: dict[str, str], log: Path) -> Iterator[tuple[str, int]]:
    """Yield (tauri-driver's URL, its pid) with WebKitWebDriver as its native driver."""
    binary, _ = tauri_driver()
    native = shutil.which("WebKitWebDriver")
    assert native, "WebKitWebDriver is missing (Debian package webkit2gtk-driver)"
    port = free_port()
    command = [str(binary), "--port", str(port), "--native-port", str(free_port())]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*command, "--native-driver", native],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url, proc), timeout_s=START_TIMEOUT_S, what="tauri-driver")
        yield url, proc.pid
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


def _answers(url: str, proc: subprocess.Popen[bytes]) -> bool:
    assert proc.poll() is None, f"tauri-driver exited ({proc.returncode})"
    try:
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1):
            return True
    except OSError:
        return False


class Session:
    """One WebDriver session: plain W3C calls, each failing loudly with the driver's reply."""

    def __init__(self, url: str, capabilities: dict[str, Any], *, timeout_s: float = 120) -> None:
        self._http = httpx.Client(base_url=url, trust_env=False, timeout=timeout_s)
        reply = self._call("POST", "/session", {"capabilities": capabilities})
        self.id: str = reply["sessionId"]

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=body)
        assert response.status_code == 200, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response.json()["value"]

    def _in(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call(method, f"/session/{self.id}{path}", body)

    def find_all(self, css: str) -> list[str]:
        found = self._in("POST", "/elements", {"using": "css selector", "value": css})
        return [element[ELEMENT_KEY] for element in found]

    def find(self, css: str) -> str:
        found = self.find_all(css)
        assert len(found) == 1, f"{css}: {len(found)} elements"
        return found[0]

    def text(self, element: str) -> str:
        return self._in("GET", f"/element/{element}/text")

    def attribute(self, element: str, name: str) -> str | None:
        return self._in("GET", f"/element/{element}/attribute/{name}")

    def enabled(self, element: str) -> bool:
        return self._in("GET", f"/element/{element}/enabled")

    def click(self, element: str) -> None:
        self._in("POST", f"/element/{element}/click", {})

    def script(self, source: str) -> Any:
        return self._in("POST", "/execute/sync", {"script": source, "args": []})

    def screenshot(self, target: Path) -> Path:
        png = base64.b64decode(self._in("GET", "/screenshot"))
        assert png.startswith(b"\x89PNG\r\n\x1a\n"), png[:16]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(png)
        return target

    def delete(self) -> None:
        self._in("DELETE", "")
        self._http.close()
