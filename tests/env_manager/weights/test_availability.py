"""One truth about whether a segmentation can succeed, for /ml/status, the doctor and
`geolibre-ml status`: the weights of the SAM 3 implementation the plan chose, fetched
for real from a fake Hub; the backend's uptime and state as the supervisor left them;
sentences without doubled punctuation; a --help without markup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from geolibre_env.backend.record import write_status
from geolibre_env.model_env import ActiveEnvironment, write_json_atomic
from geolibre_env.redact import redact
from geolibre_env.report.diagnostics import check_backend, check_weights
from geolibre_env.report.state import format_status
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec, load_spec
from geolibre_env.weights.availability import segmentation_availability, weights_verdict
from geolibre_env.weights.models import fetch_model
from geolibre_env.weights.sam3 import fetch_weights, planned_backend, store_token

from tests.env_manager.fake_hub import FakeHub, sam3_hub

TOKEN = "hf_AvailabilityToken0123456789abcdefXYZ"


@pytest.fixture(scope="module")
def spec() -> ModelEnvSpec:
    return load_spec()


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    files = {
        "config.json": b'{"model_type": "sam3"}\n',
        "sam3.pt": os.urandom(200_000),
        "model.safetensors": os.urandom(300_000),
        "processor_config.json": b"{}\n",
        "README.md": b"# SAM 3\n",
    }
    server = sam3_hub(TOKEN, files, lfs=("sam3.pt", "model.safetensors"), vocab=b"vocab" * 100)
    yield server
    server.close()


def make_settings(tmp_path: Path, hub: FakeHub | None = None) -> EnvSettings:
    environ = {"GEOLIBRE_ML_HOME": str(tmp_path / "home")}
    if hub is not None:
        environ["HF_ENDPOINT"] = hub.url
    return EnvSettings.from_environ(environ)


def environment(
    tmp_path: Path, *, backend: str | None = "transformers", cuda: bool = False
) -> ActiveEnvironment:
    """An installed environment as its record describes it (what the checks read)."""
    site = tmp_path / "site-packages"
    (site / "samgeo" / "assets").mkdir(parents=True, exist_ok=True)
    record = {"site_packages": str(site), "cuda_working": cuda}
    if backend is not None:
        record["sam3_backend"] = backend
    return ActiveEnvironment(root=tmp_path / "envs" / "env-1", record=record)


@pytest.mark.parametrize(
    ("recorded", "cuda", "expected"),
    [("transformers", False, "transformers"), ("meta", True, "meta"),
     ("meta", False, "transformers"), (None, True, "meta")],
)  # fmt: skip
def test_the_implementation_that_runs_is_the_plans_unless_cuda_failed(
    tmp_path, recorded, cuda, expected
):
    assert planned_backend(environment(tmp_path, backend=recorded, cuda=cuda)) == expected
    assert planned_backend(None, "transformers") == "transformers"


def test_missing_weights_say_which_implementation_and_the_exact_next_step(tmp_path, spec):
    settings = make_settings(tmp_path)
    verdict = weights_verdict(settings, environment(tmp_path), spec=spec)
    assert not verdict.present and verdict.backend == "transformers"
    assert verdict.reason.startswith("The SAM 3 weights for the transformers implementation")
    assert "`geolibre-ml install --ask-token`" in verdict.hint
    assert "press Install in the app's ML settings and give the token" in verdict.hint
    assert "--checkpoint" not in verdict.hint, "a checkpoint serves meta only"
    assert redact(verdict.hint) == verdict.hint, "the log's secret masking must leave it whole"
    can = segmentation_availability(True, verdict)
    assert can.available is False and can.reason == verdict.reason
    store_token(settings.paths, TOKEN)
    again = weights_verdict(settings, environment(tmp_path), spec=spec)
    assert "already configured" in again.hint and "--ask-token" not in again.hint
    assert TOKEN not in json.dumps(again.to_dict())


@pytest.mark.parametrize("cuda", [False, True])
def test_status_reports_each_model_the_app_can_pick(tmp_path, hub, spec, cuda):
    settings = make_settings(tmp_path, hub)
    hub.add_repo("facebook/sam3.1", {"config.json": b"{}", "sam3.1_multiplex.pt": b"w" * 900})
    active = environment(tmp_path, backend="meta" if cuda else "transformers", cuda=cuda)
    models = weights_verdict(settings, active, spec=spec).to_dict()["models"]
    assert models == {
        "facebook/sam3": {"present": False, "runs_here": True, "fetch": "geolibre-ml install"},
        "facebook/sam3.1": {"present": False, "runs_here": cuda,
                            "fetch": "geolibre-ml install --model facebook/sam3.1"},
    }  # fmt: skip
    fetch_model(settings, spec, "facebook/sam3.1", site_packages=active.site_packages)
    models = weights_verdict(settings, active, spec=spec).to_dict()["models"]
    assert models["facebook/sam3.1"]["present"] is True
    assert models["facebook/sam3"]["present"] is False


def test_fetched_weights_make_it_available_and_removing_one_file_says_so(tmp_path, hub, spec):
    settings = make_settings(tmp_path, hub)
    active = environment(tmp_path)
    fetch_weights(
        settings, spec, backend="transformers", token=TOKEN, site_packages=active.site_packages
    )
    verdict = weights_verdict(settings, active, spec=spec)
    assert verdict.present and verdict.reason is None and verdict.hint is None
    assert segmentation_availability(True, verdict).available is True
    assert segmentation_availability(False, verdict).available is False, "nothing answers"
    blob = next((settings.paths.hf_home / "hub").rglob("model.safetensors"))
    blob.unlink()
    gone = weights_verdict(settings, active, spec=spec)
    assert not gone.present and "model.safetensors" in gone.reason
    # The meta implementation was never fetched: asked for it, the verdict says meta.
    meta = weights_verdict(settings, active, backend="meta", spec=spec)
    assert "for the meta implementation" in meta.reason and "sam3.pt" in meta.reason


def test_the_doctor_reports_the_weights_of_the_planned_implementation(tmp_path, spec):
    settings = make_settings(tmp_path)
    # Not installed yet: the plan for this computer chose transformers.
    check = check_weights(settings, spec, None, "transformers")
    assert check.status == "failure"
    assert "transformers implementation" in check.detail and "meta" not in check.detail
    # Installed with meta recorded, but CUDA failed verification: transformers runs.
    check = check_weights(settings, spec, environment(tmp_path, backend="meta"), "meta")
    assert "transformers implementation" in check.detail


def test_a_last_install_error_is_quoted_only_for_the_environment_in_use(tmp_path, spec):
    settings = make_settings(tmp_path)
    error = "Could not reach the Hugging Face Hub at 127.0.0.1: connection refused."
    write_json_atomic(
        settings.paths.last_install,
        {"at": time.time(), "outcome": "installed", "env": "env-1", "weights_error": error},
    )
    active = environment(tmp_path)
    current = check_weights(settings, spec, active, "transformers")
    assert "The last install said: Could not reach the Hugging Face Hub" in current.detail
    assert ".." not in current.detail
    after_uninstall = check_weights(settings, spec, None, "transformers")
    assert "last install" not in after_uninstall.detail
    assert "last_install_error" not in after_uninstall.data


def test_the_doctor_reads_the_backends_uptime_as_of_now(tmp_path):
    settings = make_settings(tmp_path)
    snapshot = {"state": "ready", "cause": "answering /health", "pid": 4242, "port": 5000,
                "uptime_s": 0.0, "restarts": 0, "last_exit": None}  # fmt: skip
    write_status(settings.paths.supervisor_status, snapshot)  # stamped with our pid: alive
    stamped = json.loads(settings.paths.supervisor_status.read_text())
    stamped["written_at"] -= 52  # written when it became ready, 52 s ago
    settings.paths.supervisor_status.write_text(json.dumps(stamped))
    check = check_backend(settings, None)
    assert "up 52 s" in check.detail and "up s" not in check.detail
    assert check.data["uptime_s"] == pytest.approx(52, abs=2)
    live = check_backend(settings, {**snapshot, "uptime_s": 52.4})
    assert "up 52 s" in live.detail


def test_sentences_never_double_their_punctuation(tmp_path):
    settings = make_settings(tmp_path)
    stopped = {"state": "stopped", "cause": "samgeo-api was stopped.", "since": time.time() - 24}
    text = format_status({"environment": None, "backend": stopped, "available": False})
    assert "samgeo-api was stopped, 24 s ago" in text or "samgeo-api was stopped, 25 s ago" in text
    assert "., " not in text
    check = check_backend(settings, {**stopped, "pid": None, "uptime_s": None})
    assert "stopped." not in check.detail[:-1] and check.detail.endswith("stopped.")
    last_exit = {"cause": "crashed", "summary": "samgeo-api exited with code 1."}
    failed = {"state": "failed", "cause": "crash loop.", "pid": None, "last_exit": last_exit}
    detail = check_backend(settings, failed).detail
    assert ".;" not in detail and ".." not in detail


def test_help_has_no_markup():
    proc = subprocess.run(
        [sys.executable, "-m", "geolibre_env", "--help"], capture_output=True, text=True, check=True
    )
    assert "``" not in proc.stdout
    assert "geolibre-ml: install, verify, repair" in proc.stdout
