"""`geolibre-ml doctor` on every diagnosis path, from recorded machine outputs and
real processes: each check ends in ok / warning / failure with what to do."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import zipfile
from pathlib import Path

import pytest
from geolibre_env.backend.process import ProcessIdentity
from geolibre_env.backend.record import BackendRecord, write_record
from geolibre_env.paths import Paths

FIXTURES = Path(__file__).parents[1] / "fixtures" / "machines"
SECRET = "hf_DoctorSecretDoctorSecret0123456789"


def fake_smi(tmp_path: Path, csv: str, *, legacy: bool = False) -> Path:
    """An nvidia-smi that prints a recorded answer (and, like the 470 driver, may
    reject the compute_cap field)."""
    script = tmp_path / "nvidia-smi"
    reject = (
        "if 'compute_cap' in ' '.join(sys.argv):\n"
        f"    sys.stdout.write(open({str(FIXTURES / 'nvidia-smi-no-compute-cap.txt')!r}).read())\n"
        "    sys.exit(2)\n"
        if legacy
        else ""
    )
    script.write_text(
        f"#!{sys.executable}\nimport sys\n{reject}"
        f"sys.stdout.write(open({str(FIXTURES / csv)!r}, newline='').read())\n"
    )
    script.chmod(0o755)
    return script


def doctor(installer, *args: str, **env: str) -> tuple[int, dict]:
    env.setdefault("GEOLIBRE_ML_NVIDIA_SMI", "/nonexistent/nvidia-smi")
    proc = installer.run("doctor", "--json", *args, env=env)
    return proc.returncode, json.loads(proc.stdout)


def check(report: dict, check_id: str) -> dict:
    return next(c for c in report["checks"] if c["id"] == check_id)


def test_fresh_machine_without_gpu_says_install_first(installer):
    code, report = doctor(installer)
    assert code == 1 and report["verdict"] == "failure"
    assert check(report, "model_env")["status"] == "failure"
    assert "geolibre-ml install" in check(report, "model_env")["fix"]
    gpu = check(report, "gpu")
    assert gpu["status"] == "warning" and "meta backend cannot run" in gpu["detail"]
    assert "transformers" in gpu["fix"]
    assert report["summary"].startswith("Segmentation will not work")


def test_an_old_driver_is_named_with_the_version_to_install(installer, tmp_path):
    smi = fake_smi(tmp_path, "nvidia-smi-470-gtx1080-legacy.csv", legacy=True)
    _code, report = doctor(installer, GEOLIBRE_ML_NVIDIA_SMI=str(smi))
    gpu = check(report, "gpu")
    assert gpu["status"] == "failure"
    assert "GTX 1080" in gpu["detail"] and "525.60.13" in gpu["detail"]


def test_a_gpu_too_old_for_any_torch_build_is_explained(installer, tmp_path):
    smi = fake_smi(tmp_path, "nvidia-smi-470-k80-legacy.csv", legacy=True)
    _code, report = doctor(installer, GEOLIBRE_ML_NVIDIA_SMI=str(smi))
    gpu = check(report, "gpu")
    assert gpu["status"] == "failure" and "K80" in gpu["detail"]


@pytest.mark.slow
def test_a_torch_without_kernels_for_this_gpu_is_a_failure(installer, tmp_path):
    installer.install_json("--no-weights")
    smi = fake_smi(tmp_path, "nvidia-smi-2xa100-550.csv")
    code, report = doctor(
        installer,
        GEOLIBRE_ML_NVIDIA_SMI=str(smi),
        STANDIN_TORCH_CUDA="12.6",
        STANDIN_TORCH_ARCHS="sm_50,sm_60,sm_70,sm_75",
        STANDIN_TORCH_DEVICES="NVIDIA A100-SXM4-80GB=8.0",
    )
    model_env = check(report, "model_env")
    assert code == 1 and model_env["status"] == "failure"
    assert "CUDA is not usable" in model_env["detail"]
    assert "no kernels for NVIDIA A100-SXM4-80GB (compute capability 8.0)" in model_env["detail"]


@pytest.mark.slow
def test_installed_but_weights_missing_points_at_the_licence(installer):
    installer.install_json("--no-weights")
    code, report = doctor(installer)
    assert check(report, "model_env")["status"] == "ok"
    weights = check(report, "weights")
    assert weights["status"] == "failure"
    assert "no Hub token is configured" in weights["detail"]
    assert "Accept the licence for facebook/sam3" in weights["fix"]
    assert code == 1


@pytest.mark.slow
def test_a_gated_refusal_from_the_last_install_is_reported(installer):
    from tests.env_manager.fake_hub import FakeHub

    hub = FakeHub()
    try:
        hub.valid_tokens.add(SECRET)
        hub.add_repo("facebook/sam3", {"config.json": b"{}"}, gated=True)
        proc = installer.run(
            "install", "--token-stdin", stdin=SECRET + "\n", env={"HF_ENDPOINT": hub.url}
        )
        assert proc.returncode == 3, proc.stderr
        assert SECRET not in proc.stdout + proc.stderr
    finally:
        hub.close()
    _code, report = doctor(installer)
    weights = check(report, "weights")
    assert "HTTP 403" in weights["detail"]
    assert "a Hub token is configured" in weights["detail"]
    assert SECRET not in json.dumps(report)


@pytest.mark.slow
def test_a_backend_that_crashed_on_start_shows_its_cause(installer, sidecar_factory):
    from tests.sidecar.supervision import FAST, segment

    sidecar = sidecar_factory(env={**FAST, "STANDIN_FAIL_START": "ImportError: No module named x"})
    with sidecar.client() as client:
        segment(client)
    _code, report = doctor(installer)
    backend = check(report, "backend")
    assert backend["status"] == "failure"
    assert "a Python module is missing" in backend["detail"]
    assert "geolibre-ml repair" in backend["fix"]


def test_a_stranger_on_the_backends_port_is_named(installer):
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        port = stranger.getsockname()[1]
        gone = ProcessIdentity(2**22 - 5, time.time(), ("samgeo-api",))  # long exited
        record = BackendRecord(gone, f"http://127.0.0.1:{port}", port, ("x",), time.time(), 1)
        write_record(Paths.resolve(installer.home).backend_state, record)
        _code, report = doctor(installer)
    ports = check(report, "ports")
    assert ports["status"] == "warning"
    assert f"the backend's port {port} is held by" in ports["detail"]
    assert f"(pid {os.getpid()})" in ports["detail"]


def test_low_disk_is_a_warning_with_the_numbers(installer, tmp_path):
    spec_dir = tmp_path / "spec"
    shutil.copytree(Path(__file__).resolve().parents[3] / "installers", spec_dir)
    spec_file = spec_dir / "model-env.toml"
    text = spec_file.read_text().replace(
        "weights_bytes = 3_500_000_000", "weights_bytes = 1_000_000_000_000_000"
    )
    spec_file.write_text(text)
    _code, report = doctor(installer, GEOLIBRE_ML_SPEC=str(spec_file))
    disk = check(report, "disk")
    assert disk["status"] == "warning" and "needed" in disk["detail"]


def test_secrets_never_reach_the_report_or_the_bundle(installer, tmp_path):
    logs = Paths.resolve(installer.home).logs
    logs.mkdir(parents=True)
    (logs / "sidecar.log").write_text(f"INFO token={SECRET}\nAuthorization: Bearer {SECRET}\n")
    env = {
        "HF_TOKEN": SECRET,
        "HTTPS_PROXY": "http://alice:Pr0xyPassw0rd@proxy.corp:3128",
        "UV_INDEX_URL": "https://bob:MirrorPassw0rd@mirror.corp/simple",
    }
    _code, report = doctor(installer, **env)
    text = json.dumps(report)
    for secret in (SECRET, "Pr0xyPassw0rd", "MirrorPassw0rd", "alice", "bob:"):
        assert secret not in text
    assert "proxy.corp:3128" in check(report, "network")["detail"]
    proc = installer.run("doctor", "--bundle", str(tmp_path), env=env)
    bundle = next(tmp_path.glob("geolibre-ml-report-*.zip"))
    assert str(bundle) in proc.stderr
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        content = b"".join(archive.read(name) for name in names)
    assert {"report.json", "report.txt", "logs/sidecar.log"} <= set(names)
    assert SECRET.encode() not in content and b"Pr0xyPassw0rd" not in content
    assert b"INFO token=***" in content


def test_text_output_is_a_readable_table(installer):
    proc = installer.run("doctor", env={"GEOLIBRE_ML_NVIDIA_SMI": "/nonexistent"})
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("GeoLibre ML doctor")
    assert any(line.strip().startswith("FAIL Model environment") for line in lines)
    assert any(line.strip().startswith("-> Install it") for line in lines)
    assert lines[-1].startswith("Verdict: FAILURE.")
