"""Issue 12's figures: time to first polygons with the real samgeo-api (from a real
``geolibre-ml install``) and the tiny SAM 3.

- samgeo-api launched by the sidecar's supervisor against the same command
  launched directly (same environment, same run, interleaved rounds);
- the first segmentation (it loads the model) against warm ones;
- the whole path from spawning ``geolibre-sidecar`` to the first polygons, and
  with ``GEOLIBRE_ML_PREWARM=1`` the time to a loaded model and the first click
  after it.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    # One client for the whole poll: httpx.get() builds a client (and a TLS context) per
    # call, which costs enough CPU on two cores to slow down the server being timed.
    with httpx.Client(timeout=1, trust_env=False) as client, log.open("ab") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = started + START_TIMEOUT_S
            while time.perf_counter() < deadline:
                try:
                    if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
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
    direct, supervised, first, warm, load = [], [], [], [], []
    env = _launch_env(stack)
    sidecar = start_sidecar(stack.home, marker=stack.marker)
    try:
        _supervised_start(sidecar)  # once, untimed: the command the supervisor runs
        command = json.loads(stack.paths.backend_state.read_text(encoding="utf-8"))["command"]
        _stop(sidecar)
        for index in range(rounds):

            def timed_direct() -> None:
                direct.append(_direct_start(command, env, stack.home / "direct.log"))

            # Alternate which goes first: whatever the previous one leaves behind (page
            # cache, a process still exiting) must not always favour the same side.
            if index % 2 == 0:
                timed_direct()
            supervised.append(_supervised_start(sidecar))
            with sidecar.client(timeout_s=REQUEST_TIMEOUT_S) as client:
                first.append(_segment(client, tif))
                this_round = [_segment(client, tif) for _ in range(3)]
            warm.extend(this_round)
            # Paired with the same round's warm requests: the machine's speed drifts.
            load.append(first[-1] - median(this_round))
            _stop(sidecar)
            if index % 2 == 1:
                timed_direct()
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
        Figure("  first minus warm, same round (the model load)", median(load), "s",
               note=_spread(load)),
    ]  # fmt: skip


def _launch_env(stack: RealStack) -> dict[str, str]:
    """What the sidecar gives its samgeo-api: its own environment minus GEOLIBRE_*
    plus the weights' variables (HF_HOME, HF_HUB_OFFLINE)."""
    from geolibre_env.backend.launch import managed_launch_variables
    from geolibre_env.settings import EnvSettings

    env = {k: v for k, v in stack.env.items() if not k.startswith("GEOLIBRE_")}
    env.update(managed_launch_variables(EnvSettings.from_environ(stack.env), stack.active))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _loaded(client: httpx.Client, url: str) -> bool:
    try:
        answer = client.get(f"{url}/models")
    except httpx.HTTPError:
        return False  # busy loading: its event loop is blocked
    return answer.status_code == 200 and bool(answer.json()["loaded"])


def _wait(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.perf_counter() + START_TIMEOUT_S + REQUEST_TIMEOUT_S
    while not (value := condition()):
        assert time.perf_counter() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL_S)
    return value


def _sidecar_to_polygons(stack: RealStack, tif: GeoTiff, rounds: int) -> list[Figure]:
    """Cold sidecar starts, without and with GEOLIBRE_ML_PREWARM (interleaved)."""
    plain, warmed_after, first_click, extra = [], [], [], []
    for _ in range(rounds):
        for prewarm in (False, True):
            env = {"GEOLIBRE_ML_PREWARM": "1"} if prewarm else {}
            started = time.perf_counter()
            sidecar = start_sidecar(
                stack.home, marker=stack.marker, env=env, timeout_s=START_TIMEOUT_S
            )
            try:
                if prewarm:
                    with sidecar.client() as ours, httpx.Client(timeout=5, trust_env=False) as c:
                        url = _wait(
                            lambda: ours.get("/ml/status").json()["backend"]["url"], "a backend"
                        )
                        _wait(lambda u=url, c=c: _loaded(c, u), "the prewarm")
                    warmed_after.append(time.perf_counter() - started)
                with sidecar.client(timeout_s=START_TIMEOUT_S + REQUEST_TIMEOUT_S) as client:
                    seconds = _segment(client, tif)
                    if prewarm:
                        this_round = [_segment(client, tif) for _ in range(3)]
                if prewarm:
                    first_click.append(seconds)
                    extra.append(seconds - median(this_round))
                else:
                    plain.append(time.perf_counter() - started)
            finally:
                sidecar.close()
    return [
        Figure("geolibre-sidecar spawn to first polygons", median(plain), "s",
               note=_spread(plain)),
        Figure("with GEOLIBRE_ML_PREWARM=1: spawn to model loaded", median(warmed_after), "s",
               note=_spread(warmed_after)),
        Figure("  then the first click (a text segmentation)", median(first_click), "s",
               note=_spread(first_click)),
        Figure("  first click minus warm, same round", median(extra), "s",
               note=_spread(extra)),
    ]  # fmt: skip


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
            figures.extend(_sidecar_to_polygons(stack, tif, rounds))
        finally:
            kill_marked(marker)
    return figures
