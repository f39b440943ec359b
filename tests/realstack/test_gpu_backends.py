"""One managed samgeo-api per NVIDIA GPU for tiled jobs (GEOLIBRE_ML_GPU_BACKENDS).

No GPU here: nvidia-smi is a script on PATH listing two H100s, and the model
environment is the real one (it cuts and merges the tiles) with its record saying
CUDA works, as ``geolibre-ml install`` writes it on such a machine. The managed
backends are the samgeo-api stand-in, launched and supervised by the real sidecar;
what is checked is what a user would see: tiles on both, each process pinned to its
own GPU, both in ``/ml/status``, nothing left after the sidecar stops, and one backend
only when the setting, or a model environment without CUDA, says so.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections import Counter
from pathlib import Path

import psutil
import pytest
from geolibre_env.model_env import COMPLETE_MARKER, write_json_atomic
from geolibre_env.paths import Paths

from tests.harness.processes import assert_nothing_left, with_marker
from tests.harness.sidecar import Sidecar, base_env, start_sidecar
from tests.harness.waiting import wait_until
from tests.realstack.jobs_helpers import job_state, make_raster, marker, read_events, submit
from tests.realstack.stack import RealStack, cli
from tests.standin.harness import STANDIN_SCRIPT

pytestmark = pytest.mark.realstack

STANDIN_CMD = shlex.join([sys.executable, str(STANDIN_SCRIPT)])
UUIDS = ("GPU-6f1c0a2e-0000-4000-8000-000000000000", "GPU-6f1c0a2e-1111-4000-8000-111111111111")
NVIDIA_SMI = (
    "#!/bin/sh\ncat <<'EOF'\n"
    + "".join(
        f"{i}, NVIDIA H100 80GB HBM3, 570.86.15, 9.0, 81559, 81000, {uuid}\n"
        for i, uuid in enumerate(UUIDS)
    )
    + "EOF\n"
)


@pytest.fixture(scope="module")
def raster(real_stack: RealStack, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("gpu-jobs") / "scene.tif"
    make_raster(real_stack.home, path, 600, 500)
    return path.read_bytes()


def gpu_machine(real_stack: RealStack, home: Path, *, cuda_working: bool) -> dict[str, str]:
    """A home whose model environment is the real one, recorded with ``cuda_working``,
    and the environment of a machine whose nvidia-smi lists two GPUs."""
    paths = Paths.resolve(home)
    root = paths.envs_dir / "env-gpu"
    root.mkdir(parents=True)
    (root / "venv").symlink_to(real_stack.active.root / "venv", target_is_directory=True)
    write_json_atomic(
        root / COMPLETE_MARKER, {**real_stack.active.record, "cuda_working": cuda_working}
    )
    write_json_atomic(paths.active_pointer, {"env": "env-gpu"})
    tools = home / "bin"
    tools.mkdir()
    (tools / "nvidia-smi").write_text(NVIDIA_SMI)
    (tools / "nvidia-smi").chmod(0o755)
    return {
        "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}",
        "GEOLIBRE_ML_SAMGEO_CMD": STANDIN_CMD,
        "STANDIN_INFER_S": "0.3",  # a tile takes long enough for both to get some
    }


def run_job(sidecar: Sidecar, raster: bytes) -> tuple[list[dict], dict]:
    with sidecar.client() as client:
        answer = submit(client, raster, tile_size=160, overlap=16)
    assert answer.status_code == 202, answer.text
    events = read_events(sidecar, answer.json()["id"])
    assert events[-1]["event"] == "end" and events[-1]["state"] == "succeeded", events[-3:]
    return events, job_state(sidecar, answer.json()["id"])


def standins(tag: str) -> dict[int, str | None]:
    """The stand-in samgeo-apis this sidecar launched: port -> their CUDA_VISIBLE_DEVICES."""
    found = {}
    for proc in with_marker(tag):
        try:
            argv = proc.cmdline()
            if len(argv) > 1 and argv[1] == str(STANDIN_SCRIPT):  # not its guard
                found[int(argv[argv.index("--port") + 1])] = proc.environ().get(
                    "CUDA_VISIBLE_DEVICES"
                )
        except psutil.Error:
            continue
    return found


def test_a_job_on_a_two_gpu_machine_runs_on_one_backend_per_gpu(
    real_stack: RealStack, raster: bytes, tmp_path: Path
) -> None:
    tag = marker()
    env = gpu_machine(real_stack, tmp_path / "home", cuda_working=True)
    sidecar = start_sidecar(tmp_path / "home", marker=tag, env=env)
    try:
        # Before any job, status already names each GPU's backend, none started.
        wait_until(
            lambda: (
                [(b["name"], b["state"]) for b in sidecar.status()["jobs"]["backends"]]
                == [("local", "stopped"), ("gpu1", "stopped")]
            ),
            timeout_s=30,
            what="both GPU backends listed before the first job",
        )
        assert standins(tag) == {}, "no backend starts before it is needed"
        events, state = run_job(sidecar, raster)
        processes = standins(tag)
        status = sidecar.status()
        shown = cli(base_env(tmp_path / "home", tag, env), "status", timeout_s=60)
        with sidecar.client(timeout_s=120) as client:
            diagnostics = client.get("/ml/diagnostics").json()
    finally:
        sidecar.close()
    assert_nothing_left(tag, timeout_s=30)

    per_backend = Counter(e["backend"] for e in events if e["event"] == "tile")
    assert set(per_backend) == {"local", "gpu1"}, per_backend
    assert sum(per_backend.values()) == state["tiles_total"] > 10
    assert min(per_backend.values()) >= 2, per_backend

    # Each process sees only its own GPU; the main one (which also serves
    # /ml/segment/*) is the first.
    assert sorted(processes.values()) == sorted(UUIDS), processes
    assert processes[status["backend"]["port"]] == UUIDS[0]
    assert status["backend"]["device"] == UUIDS[0]

    listed = {b["name"]: b for b in status["jobs"]["backends"]}
    assert list(listed) == ["local", "gpu1"]
    assert listed["local"]["device"] == f"GPU 0: NVIDIA H100 80GB HBM3 ({UUIDS[0]})"
    assert listed["gpu1"]["device"] == f"GPU 1: NVIDIA H100 80GB HBM3 ({UUIDS[1]})"
    for name, count in per_backend.items():
        assert listed[name]["tiles_done"] == count and listed[name]["state"] == "ready"
    # geolibre-ml status and the doctor name both, with their GPUs.
    assert f"Backend on GPU {UUIDS[0]}: ready" in shown.stdout, shown.stdout
    assert f"Backend gpu1 on GPU {UUIDS[1]}: ready" in shown.stdout, shown.stdout
    [doctor] = [c for c in diagnostics["checks"] if c["id"] == "backend"]
    assert doctor["detail"].startswith(f"on GPU {UUIDS[0]}, state ready"), doctor["detail"]
    assert f"gpu1 on GPU {UUIDS[1]}: ready" in doctor["detail"], doctor["detail"]

    # Its own log and record; stopped by the sidecar itself, not left to its guard.
    assert (tmp_path / "home" / "logs" / "samgeo-api-gpu1.log").stat().st_size > 0
    state_dir = tmp_path / "home" / "state"
    assert not (state_dir / "backend-gpu1.json").exists()
    last = json.loads((state_dir / "supervisor-gpu1.json").read_text())
    assert (last["state"], last["cause"]) == ("stopped", "samgeo-api was stopped with the sidecar.")


@pytest.mark.parametrize(
    ("setting", "cuda_working"),
    [("0", True), ("1", True), (None, False)],
    ids=["setting-0", "setting-1", "no-cuda-in-the-model-environment"],
)
def test_one_backend_only_when_the_setting_or_the_environment_says_so(
    real_stack: RealStack, raster: bytes, tmp_path: Path, setting: str | None, cuda_working: bool
) -> None:
    tag = marker()
    env = gpu_machine(real_stack, tmp_path / "home", cuda_working=cuda_working)
    if setting is not None:
        env["GEOLIBRE_ML_GPU_BACKENDS"] = setting
    sidecar = start_sidecar(tmp_path / "home", marker=tag, env=env)
    try:
        events, _state = run_job(sidecar, raster)
        processes = standins(tag)
        status = sidecar.status()
    finally:
        sidecar.close()
    assert_nothing_left(tag, timeout_s=30)
    assert {e["backend"] for e in events if e["event"] == "tile"} == {"local"}
    assert list(processes.values()) == [None], "one backend, not pinned to a GPU"
    assert [(b["name"], b["device"]) for b in status["jobs"]["backends"]] == [("local", None)]
