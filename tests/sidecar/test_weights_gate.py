"""Which segment requests the sidecar refuses for missing weights, from an installed
environment's record on disk: only what could only fail on them (SAM 3 from the
repository we install, with the implementation that would run; facebook/sam3.1 while
its own files are missing, naming the command that fetches them), never SAM 1 or 2,
never a server we did not install."""

from __future__ import annotations

from pathlib import Path

import pytest
from geolibre_env.model_env import COMPLETE_MARKER, env_python, write_json_atomic
from geolibre_env.weights.hub_cache import record_fetched
from geolibre_sidecar.settings import SidecarSettings
from geolibre_sidecar.weights_gate import WeightsGate


def installed(home: Path, *, backend: str, cuda: bool, **extra: str) -> WeightsGate:
    settings = SidecarSettings.from_environ({"GEOLIBRE_ML_HOME": str(home), **extra})
    paths = settings.env.paths
    root = paths.envs_dir / "env-1"
    env_python(root).parent.mkdir(parents=True)
    env_python(root).write_text("")
    site = root / "site"
    (site / "samgeo" / "assets").mkdir(parents=True)
    (site / "samgeo" / "assets" / "bpe_simple_vocab_16e6.txt.gz").write_bytes(b"v")
    record = {"sam3_backend": backend, "cuda_working": cuda, "site_packages": str(site)}
    write_json_atomic(root / COMPLETE_MARKER, record)
    write_json_atomic(paths.active_pointer, {"env": "env-1"})
    return WeightsGate(settings)


def place_weights(gate: WeightsGate, backend: str, names: tuple[str, ...]) -> None:
    """Files in huggingface_hub's cache layout, as the installer leaves them."""
    paths = gate.settings.env.paths
    repo = paths.hf_home / "hub" / "models--facebook--sam3"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text("c0ffee")
    snapshot = repo / "snapshots" / "c0ffee"
    snapshot.mkdir(parents=True, exist_ok=True)
    for name in names:
        (snapshot / name).write_bytes(b"x")
    record_fetched(paths.hf_home, backend, "facebook/sam3", "c0ffee", dict.fromkeys(names, 1))
    gate.forget()


def test_text_without_backend_is_refused_before_the_body_on_a_cpu_machine(tmp_path):
    gate = installed(tmp_path, backend="transformers", cuda=False)
    refusal = gate.refusal("text", None)
    assert refusal is not None and refusal.cause == "weights_missing"
    assert "transformers implementation" in refusal.detail and "--ask-token" in refusal.hint
    place_weights(gate, "transformers", ("config.json", "model.safetensors"))
    assert gate.refusal("text", None) is None
    assert gate.refusal("text", {"prompt": "x"}) is None


@pytest.mark.parametrize(
    ("mode", "fields", "refused"),
    [
        ("text", {"prompt": "x", "backend": "transformers"}, True),  # its files are missing
        ("text", {"prompt": "x"}, False),  # the plan's meta: present
        ("text", {"prompt": "x", "backend": "meta"}, False),
        ("text", {"prompt": "x", "backend": "transformers", "model_id": "facebook/sam3.1"},
         True),  # another checkpoint, not fetched: HF_HUB_OFFLINE=1 would fail on it
        ("automatic", {}, False),  # SAM 3 here is always meta: present
        ("automatic", {"model_version": "sam2"}, False),  # SAM 2 has its own weights
        ("predict", {"model_version": "sam", "boxes": "[[0,0,1,1]]"}, False),
    ],
)  # fmt: skip
def test_with_fields_only_the_implementation_and_model_in_use_count(
    tmp_path, mode, fields, refused
):
    gate = installed(tmp_path, backend="meta", cuda=True)
    place_weights(gate, "meta", ("config.json", "sam3.pt"))
    assert gate.refusal("text", None) is None, "meta can run here and has its weights"
    assert (gate.refusal(mode, fields) is not None) is refused


def test_automatic_with_sam3_needs_the_meta_files(tmp_path):
    gate = installed(tmp_path, backend="meta", cuda=True)
    assert gate.refusal("automatic", None) is None, "model_version is not known yet"
    refusal = gate.refusal("automatic", {"model_version": "sam3"})
    assert refusal is not None and "meta implementation" in refusal.detail


def test_another_sam3_checkpoint_in_the_cache_defers_the_early_refusal(tmp_path):
    gate = installed(tmp_path, backend="meta", cuda=True)
    assert gate.refusal("text", None) is not None
    (gate.settings.env.paths.hf_home / "hub" / "models--facebook--sam3.1").mkdir(parents=True)
    assert gate.refusal("text", None) is None


def test_sam3_1_without_its_files_answers_with_the_command_that_fetches_them(tmp_path):
    gate = installed(tmp_path, backend="meta", cuda=True)
    place_weights(gate, "meta", ("config.json", "sam3.pt"))
    fields = {"prompt": "x", "model_id": "facebook/sam3.1"}
    refusal = gate.refusal("text", fields)
    assert refusal is not None and refusal.cause == "weights_missing"
    assert refusal.detail == (
        "The weights of facebook/sam3.1 are not on this computer, so a segmentation with it "
        "cannot run."
    )
    assert "`geolibre-ml install --model facebook/sam3.1`" in refusal.hint
    assert '`POST /ml/backend/install {"model": "facebook/sam3.1"}`' in refusal.hint
    repo = gate.settings.env.paths.hf_home / "hub" / "models--facebook--sam3.1"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("c0ffee")
    (repo / "snapshots" / "c0ffee").mkdir(parents=True)
    for name in ("config.json", "sam3.1_multiplex.pt"):
        (repo / "snapshots" / "c0ffee" / name).write_bytes(b"x")
    assert gate.refusal("text", fields) is None


def test_a_backend_we_did_not_install_is_never_refused(tmp_path):
    cmd = installed(tmp_path / "a", backend="transformers", cuda=False,
                    GEOLIBRE_ML_SAMGEO_CMD="samgeo-api")  # fmt: skip
    assert cmd.refusal("text", None) is None and cmd.verdict() is None
    url = installed(tmp_path / "b", backend="transformers", cuda=False,
                    GEOLIBRE_ML_SAMGEO_URL="http://127.0.0.1:9")  # fmt: skip
    assert url.refusal("text", {"prompt": "x"}) is None


def test_an_install_is_seen_at_once(tmp_path):
    gate = installed(tmp_path, backend="transformers", cuda=False)
    assert not gate.verdict().present
    place_weights(gate, "transformers", ("config.json",))  # then forget(), as after_install
    assert gate.verdict().present
