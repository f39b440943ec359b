"""Tier 2: the model environment's own huggingface_hub (the spec's pinned 1.x, with
hf-xet) fetches SAM 3's files through the fake Hub, as the install's weights step
runs it; a connection dropped mid-file resumes, and the result is found offline."""

from __future__ import annotations

import os
import subprocess

import pytest
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import load_spec
from geolibre_env.weights.hub_errors import HubOfflineError
from geolibre_env.weights.sam3 import fetch_weights

from tests.env_manager.fake_hub import SAM3_REPO, FakeHub, sam3_hub
from tests.env_manager.package_index import make_test_ca

pytestmark = pytest.mark.realstack
TOKEN = "hf_RealStackHubToken0123456789abcdefXY"


def test_the_model_environment_s_huggingface_hub_fetches_through_the_fake_hub(real_stack, tmp_path):
    python = real_stack.active.python
    pins = load_spec().constraints_path.read_text().split()
    probe = "import huggingface_hub; print(huggingface_hub.__version__)"
    version = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    assert f"huggingface_hub=={version.stdout.strip()}" in pins, "the spec's pinned version"

    files = {"config.json": b'{"model_type": "sam3"}', "model.safetensors": os.urandom(400_000),
             "processor_config.json": b"{}", "sam3.pt": os.urandom(1000)}  # fmt: skip
    hub = sam3_hub(TOKEN, files, lfs=("model.safetensors", "sam3.pt"), vocab=b"v" * 100)
    weights = hub.repos[("model", SAM3_REPO)].files["model.safetensors"]
    weights.fail_after_bytes, weights.fail_times = 200_000, 1
    try:
        settings = EnvSettings.from_environ(
            {"GEOLIBRE_ML_HOME": str(tmp_path / "home"), "HF_ENDPOINT": hub.url}
        )
        status = fetch_weights(
            settings, load_spec(), backend="transformers", token=TOKEN, python=python
        )
        cdn = hub.log(server="cdn", method="GET")
    finally:
        hub.close()
    assert status.present and sorted(f.name for f in status.files) == [
        "config.json", "model.safetensors", "processor_config.json",
    ]  # fmt: skip
    assert [r.range is None for r in cdn] == [True, False], "resumed with a Range request"
    found = subprocess.run(
        [python, "-c", "import huggingface_hub as h; print(h.hf_hub_download("
         f"'{SAM3_REPO}', 'model.safetensors'))"],
        env={"HF_HOME": str(settings.paths.hf_home), "HF_HUB_OFFLINE": "1", "PATH": os.defpath},
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    with open(found.stdout.strip(), "rb") as handle:
        assert handle.read() == weights.content


def test_its_httpx_trusts_the_extra_ca_through_ssl_cert_file(real_stack, tmp_path):
    ca = make_test_ca(tmp_path / "ca")
    hub = FakeHub(tls=ca.server_context())
    hub.add_repo(SAM3_REPO, {"config.json": b"{}", "sam3.pt": b"x" * 5000}, lfs=("sam3.pt",))
    python = real_stack.active.python

    def settings(name: str, **extra: str) -> EnvSettings:
        environ = {"GEOLIBRE_ML_HOME": str(tmp_path / name), "HF_ENDPOINT": hub.url, **extra}
        return EnvSettings.from_environ(environ)

    try:
        with pytest.raises(HubOfflineError) as caught:
            fetch_weights(settings("untrusted"), load_spec(), backend="meta", python=python)
        trusted = settings("trusted", GEOLIBRE_ML_CA_BUNDLE=str(ca.ca_cert))
        status = fetch_weights(trusted, load_spec(), backend="meta", python=python)
    finally:
        hub.close()
    assert caught.value.kind == "tls" and "GEOLIBRE_ML_CA_BUNDLE" in caught.value.hint
    assert status.present
