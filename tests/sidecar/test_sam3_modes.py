"""The SAM 3 implementation by default, and the truth per mode (issue 12, item 3).

Unit tests of what an installed environment's record implies, then the real
sidecar launching the stand-in from a real offline install on this GPU-less
machine: a text request without ``backend`` gets the installed implementation
(appended as the last part, whether the client sent a Content-Length or not),
an explicit one is kept, and what needs CUDA is refused at once with 501.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from geolibre_sidecar.sam3_modes import Sam3Policy, from_record
from geolibre_sidecar.settings import SidecarSettings

from tests.conftest import install_offline
from tests.env_manager.fake_hub import sam3_hub
from tests.harness.processes import with_marker
from tests.standin.harness import make_png

PNG = make_png(32, 24)
TOKEN = "hf_Sam3ModesSam3ModesSam3Modes012345"
CPU_RECORD = {"sam3_backend": "transformers", "cuda_working": False, "build": "cu130"}


@pytest.mark.parametrize(
    ("record", "default", "automatic_works"),
    [
        (CPU_RECORD, "transformers", False),
        ({"sam3_backend": "meta", "cuda_working": True, "build": "cu128"}, "meta", True),
        # Chosen by the user on a GPU machine: kept, and meta still runs there.
        ({"sam3_backend": "transformers", "cuda_working": True}, "transformers", True),
        # The plan wanted meta, but verification found CUDA broken: only transformers answers.
        ({"sam3_backend": "meta", "cuda_working": False}, "transformers", False),
    ],
)
def test_the_record_decides_the_default_and_what_works(record, default, automatic_works):
    here = from_record(record)
    modes = here.modes()
    assert here.default == default
    assert modes["text"] == {
        "works": True,
        "implementation": default,
        "detail": modes["text"]["detail"],
    }
    for mode in ("automatic", "predict"):
        assert modes[mode]["works"] is automatic_works
        assert modes[mode]["implementation"] == "meta"
        assert (here.refusal(mode, {}) is None) is automatic_works
        assert (here.refusal(mode, {"model_version": " "}) is None) is automatic_works
        assert here.refusal(mode, {"model_version": "sam"}) is None, "SAM 1 runs on the CPU"
        assert here.refusal(mode, {}, complete=False) is None, "model_version may come later"
    assert here.refusal("text", {"prompt": "trees"}) is None
    assert here.refusal("text", {"backend": "transformers"}) is None
    assert (here.refusal("text", {"backend": "meta"}) is None) is automatic_works
    assert (here.refusal("text", {"model_id": "facebook/sam3.1"}) is None) is automatic_works


def test_the_refusal_is_one_sentence_that_says_why_and_what_works():
    refusal = from_record(CPU_RECORD).refusal("predict", {"point_coords": "[[1, 2]]"})
    assert refusal is not None
    assert refusal.detail.startswith("/segment/predict with SAM 3 cannot run on this computer")
    assert "needs CUDA (CUDA did not work in the cu130 environment installed here)" in (
        refusal.detail
    )
    assert refusal.detail.endswith("transformers implementation.")
    assert refusal.detail.count(". ") == 0, "one sentence"


def test_backends_we_did_not_install_are_left_alone(tmp_path: Path):
    for extra in (
        {"GEOLIBRE_ML_SAMGEO_URL": "http://127.0.0.1:9"},
        {"GEOLIBRE_ML_SAMGEO_CMD": "samgeo-api"},
        {},  # no environment: a samgeo-api on PATH would be launched
    ):
        settings = SidecarSettings.from_environ({"GEOLIBRE_ML_HOME": str(tmp_path), **extra})
        here = Sam3Policy(settings).current()
        assert here.default is None and here.meta_runs is None
        assert here.refusal("automatic", {}) is None
        assert {m["works"] for m in here.modes().values()} == {None}


@pytest.fixture(scope="module")
def installed_home(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, warm_uv_cache: Path
) -> Iterator[Path]:
    """A real install from the wheelhouse, its transformers weights from a fake Hub."""
    home = tmp_path_factory.mktemp("sam3 modes home")
    marker = "gltest-sam3-install"
    files = {"config.json": b'{"model_type": "sam3"}\n', "model.safetensors": os.urandom(4096),
             "processor_config.json": b"{}\n", "sam3.pt": os.urandom(4096)}  # fmt: skip
    hub = sam3_hub(TOKEN, files, lfs=("sam3.pt", "model.safetensors"), vocab=os.urandom(2048))
    try:
        record = install_offline(home, wheelhouse, warm_uv_cache, marker, hub=(hub.url, TOKEN))
    finally:
        hub.close()
    assert record["sam3_backend"] == "transformers" and record["cuda_working"] is False
    yield home
    assert not with_marker(marker), "the install left processes behind"


@pytest.fixture
def managed(sidecar_factory, installed_home: Path):
    # The stand-in fails meta like a GPU-less machine would, should anything reach it.
    return sidecar_factory(home=installed_home, env={"STANDIN_GPU": "0"})


def echo(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()["standin"]


def test_status_says_per_mode_what_works_here(managed):
    modes = managed.status()["modes"]
    assert modes["text"]["works"] is True and modes["text"]["implementation"] == "transformers"
    assert modes["automatic"]["works"] is False and modes["predict"]["works"] is False
    assert "needs CUDA" in modes["automatic"]["detail"]


def test_text_without_backend_gets_the_installed_implementation(managed):
    fields = {"prompt": "trees", "model_version": "sam3", "output_format": "geojson"}
    with managed.client() as client:
        # httpx sends a Content-Length here; the body the backend gets is longer.
        sized = client.post(
            "/ml/segment/text", files={"file": ("a.png", PNG, "image/png")}, data=fields
        )
        request = client.build_request(
            "POST", "/ml/segment/text", files={"file": ("a.png", PNG, "image/png")}, data=fields
        )
        body = request.read()
        chunked = client.post(
            "/ml/segment/text",
            content=iter([body[:100], body[100:-7], body[-7:]]),
            headers={"content-type": request.headers["content-type"]},
        )
    for answer in (echo(sized), echo(chunked)):
        received = answer["received"]
        # httpx puts the text fields first; ours comes last, once.
        assert received["part_names"] == [*fields, "file", "backend"]
        assert received["fields"]["backend"] == "transformers"
        assert received["file_bytes"] == len(PNG)
        assert answer["values"]["backend"] == "transformers"
        assert "transformers" in json.dumps(answer["model"])


def test_an_explicit_choice_is_kept_and_meta_is_refused_at_once(managed):
    with managed.client() as client:
        explicit = client.post(
            "/ml/segment/text",
            files={"file": ("a.png", PNG, "image/png")},
            data={"backend": "transformers", "prompt": "roofs"},
        )
        meta = client.post(
            "/ml/segment/text",
            files={"file": ("a.png", PNG, "image/png")},
            data={"backend": "meta", "prompt": "roofs"},
        )
        refused = {
            mode: client.post(
                f"/ml/segment/{mode}",
                files={"file": ("a.png", PNG, "image/png")},
                data={"point_coords": "[[1, 2]]", "point_labels": "[1]"},
            )
            for mode in ("automatic", "predict")
        }
        backend_url = client.get("/ml/status").json()["url"]
    stats = httpx.get(f"{backend_url}/__standin__/stats", trust_env=False).json()
    assert echo(explicit)["received"]["part_names"] == ["backend", "prompt", "file"]
    assert meta.status_code == 501
    assert meta.json()["detail"].startswith("backend=meta cannot run on this computer")
    for mode, response in refused.items():
        assert response.status_code == 501, response.text
        assert response.json()["detail"].startswith(f"/segment/{mode} with SAM 3 cannot run")
    # Only the explicit request reached samgeo-api: nothing failed deep inside it.
    assert stats["segment_requests"] == 1
