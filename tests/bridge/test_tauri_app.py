"""The minimal Tauri v2 app (tauri-bridge/app) built with cargo and run in a real
WebKitGTK window under Xvfb, as GeoLibre's users run the desktop app.

The app takes the packaging recipe as it is (tauri/tauri.conf.fragment.json via
``tauri build --config``, the shell capability file, ml-sidecar.ts): bundled uv
runs the bundled uv project with ``--frozen``, its environment is built under
the app's data folder, and our TypeScript client reads the ready line inside the
webview. The backend is the samgeo-api stand-in, named by GEOLIBRE_ML_SAMGEO_CMD
in the app's own environment (so a segmentation proves the variable reached the
sidecar); the install runs real uv, offline, from the stand-in's wheelhouse.

The page clicks its own buttons when GEOLIBRE_APP_E2E_REPORT names a file, and
reports what it shows after each step; the tests wait on those reports.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.harness.node import node_base_env
from tests.harness.processes import MARKER_VAR, assert_nothing_left, wait_gone, with_marker
from tests.harness.tauri_app import (
    IDENTIFIER,
    PRODUCT_NAME,
    ROOT,
    AppRun,
    build_app,
    install_deb,
    launch,
    wait_step,
)
from tests.harness.waiting import wait_until
from tests.harness.xvfb import screen_is_blank, screenshot, xvfb

pytestmark = [
    pytest.mark.tauri,
    pytest.mark.skipif(sys.platform != "linux", reason="the app is built for Linux (WebKitGTK)"),
]

STANDIN = ROOT / "tests" / "standin" / "samgeo_standin.py"
ARTIFACTS = ROOT / "test-artifacts"
CLOSED_HUB = "http://127.0.0.1:9"
# The limit: nothing the app started outlives it by more than this.
OUTLIVE_LIMIT_S = 5.0
# The first launch lets uv build the sidecar's environment (from the warm uv cache).
FIRST_READY_TIMEOUT_S = 240
STEP_TIMEOUT_S = 120
INSTALL_TIMEOUT_S = 300
CLOSE_TIMEOUT_S = 60


@dataclass(frozen=True)
class AppWorld:
    binary: Path
    env: dict[str, str]
    folder: Path
    data_dir: Path
    framebuffer: Path

    @property
    def resources(self) -> Path:
        """Where the .deb puts the recipe's resources (/usr/lib/<product name>/geolibre-ml)."""
        return self.binary.parent.parent / "lib" / PRODUCT_NAME / "geolibre-ml"

    @property
    def sidecar_env(self) -> Path:
        return self.data_dir / "ml-sidecar-env"


def _missing_prerequisite() -> str | None:
    sys.path.insert(0, str(ROOT))
    import dev  # the same Debian packages `python3 dev.py test` installs

    if not shutil.which("cargo"):
        return "cargo is missing: the Tauri app's tests need Rust (rustup.rs)"
    dev.ensure_tauri_deps()
    missing = dev.missing_debs(dev.TAURI_DEBS) if shutil.which("dpkg-query") else []
    if missing:
        return f"Debian packages missing: {' '.join(missing)} (installing them needs root)"
    return None


def _uv_cache_dir(uv: Path) -> str:
    """The uv cache `uv sync` filled for this checkout: the sidecar's wheels are there."""
    out = subprocess.run([str(uv), "cache", "dir"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[AppWorld]:
    if reason := _missing_prerequisite():
        pytest.skip(reason)
    env = node_base_env()
    env.pop("VIRTUAL_ENV", None)  # ours (pytest's); a desktop session has none
    deb, seconds = build_app(env)
    print(f"\nnpm run build (esbuild, cargo, the .deb): {seconds:.1f} s")
    folder = tmp_path_factory.mktemp("tauri-app")
    binary = install_deb(deb, folder / "installed")
    runtime = folder / "runtime"
    runtime.mkdir(mode=0o700)
    home = folder / "ml home"
    home.mkdir()
    with xvfb(folder / "screen") as (display, framebuffer):
        env.update(
            {
                "DISPLAY": display,
                "XDG_DATA_HOME": str(folder / "data"),
                "XDG_CONFIG_HOME": str(folder / "config"),
                "XDG_RUNTIME_DIR": str(runtime),
                # No GPU, no compositor: WebKitGTK draws in software.
                "WEBKIT_DISABLE_COMPOSITING_MODE": "1",
                "WEBKIT_DISABLE_DMABUF_RENDERER": "1",
                "LIBGL_ALWAYS_SOFTWARE": "1",
                "NO_AT_BRIDGE": "1",
                # The app passes its environment on: these reach the sidecar.
                "GEOLIBRE_ML_HOME": str(home),
                "GEOLIBRE_ML_SAMGEO_CMD": shlex.join([sys.executable, str(STANDIN)]),
                "GEOLIBRE_ML_NVIDIA_SMI": "/nonexistent/nvidia-smi",
                "HF_ENDPOINT": CLOSED_HUB,
                # An air-gapped site: uv reads only its cache and the wheelhouse.
                "UV_OFFLINE": "1",
                "UV_NO_INDEX": "1",
                "UV_FIND_LINKS": str(wheelhouse),
                "UV_PYTHON_DOWNLOADS": "never",
                "UV_CACHE_DIR": _uv_cache_dir(binary.parent / "uv"),
            }
        )
        data_dir = folder / "data" / IDENTIFIER
        yield AppWorld(binary, env, folder, data_dir, framebuffer)


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and its digest (Python's own __pycache__ aside: on a
    read-only install folder Python skips writing it, silently)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def _start(world: AppWorld, name: str, marker: str, *, flow: str) -> AppRun:
    """Launch the app; its page runs ``flow`` (see tauri-bridge/app/src/e2e.ts)."""
    env = {**world.env, MARKER_VAR: marker, "GEOLIBRE_APP_E2E_FLOW": flow}
    return launch(world.binary, env, world.folder, name)


def _kill_all(run: AppRun, marker: str) -> None:
    if run.proc.poll() is None:
        run.proc.kill()
        run.proc.wait()
    for proc in with_marker(marker):
        proc.kill()


def _check_sidecar(world: AppWorld, app_pid: int, reported: dict) -> psutil.Process:
    """The sidecar the page reported: its own port, the app's pid as its parent-pid,
    uv's environment under the app's data folder, a token, the webview's origin."""
    url = reported["url"]
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":8765"), url
    sidecar = psutil.Process(reported["pid"])
    cmdline = sidecar.cmdline()
    assert "--parent-pid" in cmdline and str(app_pid) in cmdline, cmdline
    environ = sidecar.environ()
    assert environ.get("VIRTUAL_ENV") == str(world.sidecar_env)
    for name in ("GEOLIBRE_ML_SAMGEO_CMD", "GEOLIBRE_ML_HOME"):  # the app's own, passed on
        assert environ.get(name) == world.env[name], name
    assert (world.sidecar_env / "pyvenv.cfg").is_file()
    # The chain the shell plugin made: app -> bundled uv -> the sidecar.
    uv = sidecar.parent()
    assert uv is not None and Path(uv.exe()) == world.binary.parent / "uv"
    assert uv.ppid() == app_pid
    with httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
        assert client.get("/ml/status").status_code == 401  # the page's calls carry the token
        origin = reported["origin"]
        assert origin in ("tauri://localhost", "http://tauri.localhost"), origin
        preflight = client.options(
            "/ml/status",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "x-geolibre-token",
            },
        )
        assert preflight.headers.get("access-control-allow-origin") == origin
    return sidecar


def _check_flow(run: AppRun) -> None:
    """What the person sees: status with Start server, ready, polygons, the install's bar."""
    status = wait_step(run, "status", timeout_s=STEP_TIMEOUT_S)
    assert status["badge"] != "ready" and status["startEnabled"], status
    started = wait_step(run, "started", timeout_s=STEP_TIMEOUT_S)
    assert started["badge"] == "ready", started
    segmented = wait_step(run, "segmented", timeout_s=STEP_TIMEOUT_S)
    assert segmented["state"] == "done" and segmented["polygons"] >= 1, segmented
    assert f"{segmented['polygons']} polygon(s) drawn" in segmented["text"], segmented
    installed = wait_step(run, "installed", timeout_s=INSTALL_TIMEOUT_S)
    assert installed["result"] == "succeeded", installed
    assert installed["progress"] >= 3 and len(installed["phases"]) >= 2, installed
    assert installed["fractions"] == sorted(installed["fractions"]), installed
    assert installed["bar"] == 1, installed


def test_app_runs_the_sidecar_and_quits_with_it(world: AppWorld, marker: str) -> None:
    """Start, status, Start server, polygons, an install's progress; the window closed
    normally takes the sidecar and the backend along; nothing was written into the
    install folder; the sidecar's output is in the app's log folder."""
    before = _tree(world.resources)
    started_at = time.monotonic()
    run = _start(world, "close", marker, flow="full-then-close")
    try:
        reported = wait_step(run, "sidecar", timeout_s=FIRST_READY_TIMEOUT_S)
        print(f"\napp start to sidecar ready: {time.monotonic() - started_at:.1f} s")
        _check_sidecar(world, run.proc.pid, reported)
        _check_flow(run)
        wait_step(run, "done", timeout_s=STEP_TIMEOUT_S)
        run.proc.wait(timeout=CLOSE_TIMEOUT_S)
        assert_nothing_left(marker, timeout_s=OUTLIVE_LIMIT_S)
    finally:
        _kill_all(run, marker)
    assert _tree(world.resources) == before, "the app wrote into its install folder"
    assert (world.resources / "uv.lock").is_file()
    log = (world.data_dir / "logs" / "ml-sidecar.log").read_text(encoding="utf-8")
    assert str(reported["pid"]) in log or reported["url"].rsplit(":", 1)[1] in log, log[-2000:]


def test_sigkilled_app_takes_the_sidecar_and_a_new_launch_gets_a_fresh_one(
    world: AppWorld, marker: str
) -> None:
    """SIGKILL gives the app no chance to stop anything: the sidecar's parent watchdog
    (--parent-pid) must end it and the backend within 5 s; the next launch meets no
    stale sidecar. A screenshot of the page is kept in test-artifacts/."""
    run = _start(world, "killed", marker, flow="full")
    try:
        first = _check_sidecar(
            world, run.proc.pid, wait_step(run, "sidecar", timeout_s=FIRST_READY_TIMEOUT_S)
        )
        _check_flow(run)
        wait_step(run, "done", timeout_s=STEP_TIMEOUT_S)
        screenshot(world.framebuffer, ARTIFACTS / "tauri-app.png")
        alive, backend = with_marker(marker), _backend(marker)
        assert first in alive and backend, f"the check sees the sidecar and backend: {alive}"
        os.kill(run.proc.pid, signal.SIGKILL)
        run.proc.wait()
        killed_at = time.monotonic()
        assert_nothing_left(marker, timeout_s=OUTLIVE_LIMIT_S)
        print(f"\nSIGKILL to no sidecar or backend left: {time.monotonic() - killed_at:.2f} s")
    finally:
        _kill_all(run, marker)

    again = _start(world, "relaunched", marker, flow="idle")
    try:
        second = wait_step(again, "sidecar", timeout_s=STEP_TIMEOUT_S)
        assert second["pid"] != first.pid
        status = wait_step(again, "status", timeout_s=STEP_TIMEOUT_S)
        assert status["badge"] != "unreachable", status
        # The recipe's capability is in force: uv with other arguments is refused.
        scope = wait_step(again, "scope", timeout_s=STEP_TIMEOUT_S)
        assert scope["refused"], scope
    finally:
        _kill_all(again, marker)
    assert_nothing_left(marker, timeout_s=OUTLIVE_LIMIT_S)


def _backend(marker: str) -> list[psutil.Process]:
    return [p for p in with_marker(marker) if str(STANDIN) in " ".join(p.cmdline())]


def test_window_closed_while_a_segmentation_runs(world: AppWorld, marker: str) -> None:
    """The window closed while samgeo-api holds a request: the window goes at once,
    the app quits, and the sidecar and the busy backend with it."""
    run = _start(world, "closed-busy", marker, flow="close-while-segmenting")
    try:
        _check_sidecar(
            world, run.proc.pid, wait_step(run, "sidecar", timeout_s=FIRST_READY_TIMEOUT_S)
        )
        wait_until(lambda: not screen_is_blank(world.framebuffer), timeout_s=10, what="a window")
        busy = wait_step(run, "segmenting", timeout_s=STEP_TIMEOUT_S)
        assert busy["badge"] == "busy" and busy["segment"] == "running", busy
        assert _backend(marker), "the backend runs while the window closes"
        closing = time.monotonic()
        # The window goes at once, although stopping the busy sidecar takes seconds.
        wait_until(lambda: screen_is_blank(world.framebuffer), timeout_s=5, what="no window")
        assert run.proc.poll() is None, "the window was gone before the app ended"
        run.proc.wait(timeout=CLOSE_TIMEOUT_S)
        print(f"\nwindow closed while busy to the app's exit: {time.monotonic() - closing:.1f} s")
        assert_nothing_left(marker, timeout_s=OUTLIVE_LIMIT_S)
    finally:
        _kill_all(run, marker)


def test_a_second_app_instance_is_told_which_one_serves_the_ml_folder(
    world: AppWorld, marker: str
) -> None:
    """Two instances share one ML data folder, which one sidecar serves (its jobs, its
    managed samgeo-api): the second's page gets the sentence that names the first's
    sidecar and the fix, the first keeps serving, and killing either leaves nothing of
    theirs; SIGTERM to the other (a session logging out) ends the rest."""
    first = _start(world, "first", marker, flow="idle")
    second: AppRun | None = None
    try:
        a = wait_step(first, "sidecar", timeout_s=FIRST_READY_TIMEOUT_S)
        a_sidecar = _check_sidecar(world, first.proc.pid, a)
        second = _start(world, "second", marker, flow="idle")
        refused = wait_step(second, "error", timeout_s=FIRST_READY_TIMEOUT_S)
        assert refused["where"] == "start", refused
        message = refused["message"]
        # The sidecar's sentence leads: it is what the user can act on.
        assert message.startswith("Another GeoLibre sidecar (pid"), message
        assert f"pid {a['pid']}" in message and a["url"] in message, message
        assert "quit the app that started it" in message, message
        with httpx.Client(trust_env=False, timeout=10) as client:
            assert client.get(a["url"] + "/health").status_code == 200
        assert wait_step(first, "status", timeout_s=STEP_TIMEOUT_S)["badge"] == "stopped"
        os.kill(second.proc.pid, signal.SIGKILL)
        second.proc.wait()
        assert a_sidecar.is_running()  # the refused instance took nothing with it
        os.kill(first.proc.pid, signal.SIGTERM)
        first.proc.wait(timeout=CLOSE_TIMEOUT_S)
        wait_gone([a_sidecar.pid], timeout_s=OUTLIVE_LIMIT_S, what="the first app's sidecar")
        assert_nothing_left(marker, timeout_s=OUTLIVE_LIMIT_S)
    finally:
        _kill_all(first, marker)
        if second is not None:
            _kill_all(second, marker)
