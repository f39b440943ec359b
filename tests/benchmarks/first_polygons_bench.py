"""Issue 12's figures: time to first polygons with the real samgeo-api (from a real
``geolibre-ml install``) and the tiny SAM 3.

- samgeo-api launched by the sidecar's supervisor against the same command
  launched directly (same environment, same run, interleaved rounds);
- the first segmentation (it loads the model) against warm ones;
- the whole path from spawning ``geolibre-sidecar`` to the first polygons.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx

from tests.benchmarks.common import Figure, median, new_marker, temp_home
from tests.harness.sidecar import Sidecar, start_sidecar
from tests.realstack.stack import (
    GeoTiff,
    RealStack,
    install_real_stack,
    kill_marked,
    make_geotiff,
    write_tiny_weights,
)
from tests.standin.harness import free_port

START_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 300.0
POLL_S = 0.02


def _spread(values: list[float]) -> str:
    return f"min {min(values):.2f}, max {max(values):.2f}, n={len(values)}"


def _segment(client: httpx.Client, tif: GeoTiff) -> float:
    started = time.perf_counter()
    response = client.post(
        "/ml/segment/text",
        files={"file": ("scene.tif", tif.data, "image/tiff")},
        data={"prompt": "trees"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["features"]
    return time.perf_counter() - started


def _supervised_start(sidecar: Sidecar) -> float:
    with sidecar.client(timeout_s=START_TIMEOUT_S) as client:
        started = time.perf_counter()
        answer = client.post(f"/ml/backend/start?wait=1&timeout_s={START_TIMEOUT_S:.0f}")
        elapsed = time.perf_counter() - started
    assert answer.status_code == 200 and answer.json()["state"] == "ready", answer.text
    return elapsed


def _stop(sidecar: Sidecar) -> None:
    with sidecar.client(timeout_s=60) as client:
        assert client.post("/ml/backend/stop").status_code == 200


def _direct_start(command: list[str], env: dict[str, str], log: Path) -> float:
    """The supervisor's own command on another port, to a healthy /health."""
    port = free_port()
    argv = [*command[: command.index("--port") + 1], str(port)]
    with log.open("ab") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = started + START_TIMEOUT_S
        while time.perf_counter() < deadline:
            try:
                url = f"http://127.0.0.1:{port}/health"
                if httpx.get(url, timeout=1, trust_env=False).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, f"samgeo-api exited; see {log}"
            time.sleep(POLL_S)
        raise AssertionError(f"samgeo-api did not answer within {START_TIMEOUT_S:g} s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _launch_and_requests(stack: RealStack, tif: GeoTiff, rounds: int) -> list[Figure]:
    direct, supervised, first, warm = [], [], [], []
    env = _launch_env(stack)
    sidecar = start_sidecar(stack.home, marker=stack.marker)
    try:
        for _ in range(rounds):
            supervised.append(_supervised_start(sidecar))
            record = json.loads(stack.paths.backend_state.read_text(encoding="utf-8"))
            with sidecar.client(timeout_s=REQUEST_TIMEOUT_S) as client:
                first.append(_segment(client, tif))
                warm.extend(_segment(client, tif) for _ in range(3))
            _stop(sidecar)
            direct.append(_direct_start(record["command"], env, stack.home / "direct.log"))
    finally:
        sidecar.close()
    overhead = [s - d for s, d in zip(supervised, direct, strict=True)]
    return [
        Figure("samgeo-api start, launched directly (to /health)", median(direct), "s",
               note=_spread(direct)),
        Figure("samgeo-api start, under the sidecar's supervisor", median(supervised), "s",
               note=_spread(supervised)),
        Figure("  supervision's cost (paired rounds)", median(overhead), "s",
               note=_spread(overhead)),
        Figure("first text segmentation (loads the model)", median(first), "s",
               note=_spread(first)),
        Figure("warm text segmentation", median(warm), "s", note=_spread(warm)),
    ]  # fmt: skip


def _launch_env(stack: RealStack) -> dict[str, str]:
    """What the sidecar gives its samgeo-api: its own environment minus GEOLIBRE_*
    plus the weights' variables (HF_HOME, HF_HUB_OFFLINE)."""
    from geolibre_env.launch import managed_backend_environment
    from geolibre_env.settings import EnvSettings

    env = {k: v for k, v in stack.env.items() if not k.startswith("GEOLIBRE_")}
    env.update(managed_backend_environment(EnvSettings.from_environ(stack.env), stack.active))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _sidecar_to_polygons(stack: RealStack, tif: GeoTiff, rounds: int) -> Figure:
    totals = []
    for _ in range(rounds):
        started = time.perf_counter()
        sidecar = start_sidecar(stack.home, marker=stack.marker, timeout_s=START_TIMEOUT_S)
        try:
            with sidecar.client(timeout_s=START_TIMEOUT_S + REQUEST_TIMEOUT_S) as client:
                _segment(client, tif)
            totals.append(time.perf_counter() - started)
        finally:
            sidecar.close()
    return Figure("geolibre-sidecar spawn to first polygons", median(totals), "s",
                  note=_spread(totals))  # fmt: skip


def run(quick: bool) -> list[Figure]:
    rounds = 2 if quick else 3
    figures: list[Figure] = []
    with temp_home("first-polygons") as folder:
        marker = new_marker()
        try:
            stack = install_real_stack(Path(folder) / "home", marker)
            write_tiny_weights(stack)
            tif = make_geotiff(stack, Path(folder) / "scene.tif")
            figures.append(
                Figure("geolibre-ml install + verify, uv cache warm",
                       stack.timings["install_s"] + stack.timings["verify_s"], "s",
                       note=f"install {stack.timings['install_s']:.0f} s, "
                       f"verify {stack.timings['verify_s']:.0f} s")
            )  # fmt: skip
            figures.append(Figure("tiny SAM 3 written", stack.timings["tiny_model_s"], "s"))
            figures.extend(_launch_and_requests(stack, tif, rounds))
            figures.append(_sidecar_to_polygons(stack, tif, rounds))
        finally:
            kill_marked(marker)
    return figures
