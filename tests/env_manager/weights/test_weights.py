"""SAM 3 weights: fetched from a fake Hub (a real loopback server) into
huggingface_hub's cache layout, resumed, verified, refused, cancelled, or taken
from a local checkpoint; the token never shows up anywhere."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from geolibre_env.errors import ConfigError, InstallCancelledError, WeightsError
from geolibre_env.net.http_client import classify_transport_error, make_client
from geolibre_env.paths import Paths
from geolibre_env.progress import CancelToken, ProgressEvent
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec, load_spec
from geolibre_env.weights.hub_errors import (
    GatedWeightsError,
    HubOfflineError,
    WeightsCancelledError,
    WeightsIntegrityError,
)
from geolibre_env.weights.models import fetch_model, model_weights
from geolibre_env.weights.sam3 import (
    fetch_weights,
    load_token,
    store_token,
    token_configured,
    weights_status,
    weights_variables,
)

from tests.env_manager.fake_hub import SAM3_REPO, VOCAB, FakeHub, FakeRepo, LoggedRequest, sam3_hub
from tests.harness.waiting import wait_until

TOKEN = "hf_PlantedGeoLibreToken0123456789abcdefXY"
REPO = SAM3_REPO
WAIT_S = 10.0
SAM3_PT_BYTES = 1_500_000


def _blob(size: int, seed: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size][::-1] if seed else os.urandom(size)


@pytest.fixture(scope="module")
def spec() -> ModelEnvSpec:
    return load_spec()


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    files = {
        "config.json": b'{"model_type": "sam3"}\n',
        "sam3.pt": os.urandom(SAM3_PT_BYTES),
        "model.safetensors": os.urandom(700_000),
        "tokenizer.json": b'{"version": "1.0"}\n' * 50,
        "processor_config.json": b'{"processor_class": "Sam3Processor"}\n',
        "README.md": b"# SAM 3\n",
        ".gitattributes": b"*.pt filter=lfs\n",
    }
    server = sam3_hub(
        TOKEN,
        files,
        lfs=("sam3.pt", "model.safetensors"),
        vocab=os.urandom(120_000),
        vocab_lfs=True,
    )
    yield server
    server.close()


def _settings(tmp_path: Path, endpoint: str, **extra: str) -> EnvSettings:
    environ = {"GEOLIBRE_ML_HOME": str(tmp_path / "home"), "HF_ENDPOINT": endpoint, **extra}
    return EnvSettings.from_environ(environ)


def _sam3(hub: FakeHub) -> FakeRepo:
    return hub.repos[("model", REPO)]


def _repo_dir(settings: EnvSettings) -> Path:
    return settings.paths.hf_home / "hub" / "models--facebook--sam3"


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_meta_download_lays_out_the_huggingface_cache(tmp_path, hub, spec):
    settings = _settings(tmp_path, hub.url)
    site = tmp_path / "site-packages"
    status = fetch_weights(
        settings, spec, backend="meta", token=TOKEN, site_packages=site, progress=lambda e: None
    )
    repo, root = _sam3(hub), _repo_dir(settings)
    assert (root / "refs" / "main").read_text() == repo.commit
    pt, config = repo.files["sam3.pt"], repo.files["config.json"]
    # LFS blobs are named by sha256, git-stored files by their git blob sha1.
    assert (root / "blobs" / pt.sha256).read_bytes() == pt.content
    assert (root / "blobs" / config.git_sha1).read_bytes() == config.content
    for name, etag in (("sam3.pt", pt.sha256), ("config.json", config.git_sha1)):
        pointer = root / "snapshots" / repo.commit / name
        assert pointer.is_symlink()
        assert os.readlink(pointer) == f"../../blobs/{etag}"
    assert sorted(p.name for p in (root / "snapshots" / repo.commit).iterdir()) == [
        "config.json",
        "sam3.pt",
    ]
    vocab = hub.repos[("dataset", "giswqs/geospatial")].files[VOCAB]
    assert (site / "samgeo" / "assets" / VOCAB).read_bytes() == vocab.content
    assert not list(root.rglob("*.incomplete"))
    assert status.present and status.route == "hub" and status.commit == repo.commit
    assert status.total_bytes == len(pt.content) + len(config.content)
    assert status.vocab_present is True and status.missing == ()
    # The token went to the Hub, never to the CDN host behind the redirect.
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub.log(server="hub"))
    cdn = hub.log(server="cdn")
    assert cdn and all("authorization" not in r.headers for r in cdn)


def test_huggingface_hub_finds_the_files_offline(tmp_path, hub, spec):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    settings = _settings(tmp_path, hub.url)
    fetch_weights(settings, spec, backend="meta", token=TOKEN)
    found = huggingface_hub.hf_hub_download(
        REPO, "sam3.pt", cache_dir=settings.paths.hf_home / "hub", local_files_only=True
    )
    assert Path(found).read_bytes() == _sam3(hub).files["sam3.pt"].content


def test_transformers_download_takes_the_listing_minus_excludes(tmp_path, hub, spec):
    settings = _settings(tmp_path, hub.url)
    status = fetch_weights(settings, spec, backend="transformers", token=TOKEN)
    snapshot = _repo_dir(settings) / "snapshots" / _sam3(hub).commit
    expected = ["config.json", "model.safetensors", "processor_config.json", "tokenizer.json"]
    assert sorted(p.name for p in snapshot.iterdir()) == expected
    assert sorted(f.name for f in status.files) == expected and status.present
    fetched = {r.path.rsplit("/", 1)[-1] for r in hub.log(method="HEAD")}
    assert "sam3.pt" not in fetched and "README.md" not in fetched
    # The status knows the transformers set offline; meta still lacks sam3.pt.
    again = weights_status(settings, spec, backend="transformers", site_packages=None)
    assert again.present
    meta = weights_status(settings, spec, backend="meta", site_packages=None)
    assert not meta.present and meta.missing == ("sam3.pt",)
    # samgeo's vocabulary is read by the meta code only (measured with samgeo 1.4.2).
    site = tmp_path / "site-packages"
    without_vocab = weights_status(settings, spec, backend="transformers", site_packages=site)
    assert without_vocab.present and without_vocab.vocab_present is False
    meta = weights_status(settings, spec, backend="meta", site_packages=site)
    assert VOCAB in meta.missing


def _range_start(request: LoggedRequest) -> int:
    assert request.range is not None and request.range.startswith("bytes=")
    return int(request.range.removeprefix("bytes=").rstrip("-"))


def test_a_dropped_connection_resumes_from_the_byte_offset(tmp_path, hub, spec):
    pt = _sam3(hub).files["sam3.pt"]
    pt.fail_after_bytes, pt.fail_times = 600_000, 1
    settings = _settings(tmp_path, hub.url)
    fetch_weights(settings, spec, backend="meta", token=TOKEN)
    gets = hub.log(server="cdn", method="GET")
    assert [r.range is None for r in gets] == [True, False]
    # huggingface_hub writes whole chunks: it resumes after the last one it wrote.
    assert 0 < _range_start(gets[1]) <= 600_000 == gets[0].body_bytes
    assert sum(r.body_bytes for r in gets) < 2 * len(pt.content)
    assert (_repo_dir(settings) / "blobs" / pt.sha256).read_bytes() == pt.content


def test_an_expired_cdn_link_is_renewed_and_the_download_resumes(tmp_path, hub, spec):
    pt = _sam3(hub).files["sam3.pt"]
    pt.fail_after_bytes, pt.fail_times, pt.expire_links_on_drop = 500_000, 1, True
    settings = _settings(tmp_path, hub.url)
    status = fetch_weights(settings, spec, backend="meta", token=TOKEN)
    cdn = hub.log(server="cdn")
    assert [(r.status, r.range is None) for r in cdn] == [(200, True), (403, False), (206, False)]
    assert _range_start(cdn[1]) == _range_start(cdn[2]) > 0
    heads = [r.path for r in hub.log(method="HEAD") if r.path.endswith("/sam3.pt")]
    assert len(heads) >= 2  # a later one fetched the fresh link
    assert (_repo_dir(settings) / "blobs" / pt.sha256).read_bytes() == pt.content
    assert status.present


def _runner_processes() -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process().children(recursive=True)
        if any(part.endswith("hub_runner.py") for part in child.cmdline())
    ]


def test_a_runner_killed_mid_file_leaves_no_blob_and_the_next_run_resumes(tmp_path, hub, spec):
    pt = _sam3(hub).files["sam3.pt"]
    pt.rate_bytes_per_s = 400_000
    settings = _settings(tmp_path, hub.url)
    reached = threading.Event()
    outcome: list[BaseException] = []

    def sink(event: ProgressEvent) -> None:
        if event.extra.get("file") == "sam3.pt" and event.extra["file_done"] >= 300_000:
            reached.set()

    def run() -> None:
        try:
            fetch_weights(settings, spec, backend="meta", token=TOKEN, progress=sink)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert reached.wait(WAIT_S), "the download never got going"
    for process in _runner_processes():
        process.kill()  # a crash, not a cancel: nothing gets to clean up
    worker.join(WAIT_S)
    assert not worker.is_alive() and len(outcome) == 1
    assert isinstance(outcome[0], WeightsError)
    assert outcome[0].message.startswith("The weights download stopped unexpectedly")
    root = _repo_dir(settings)
    kept = (root / "blobs" / f"{pt.sha256}.incomplete").stat().st_size
    assert 300_000 <= kept < len(pt.content)
    assert not (root / "blobs" / pt.sha256).exists()
    assert not weights_status(settings, spec, backend="meta", site_packages=None).present

    pt.rate_bytes_per_s = None
    wait_until(lambda: len(hub.log(server="cdn", method="GET")) == 1, timeout_s=WAIT_S,
               what="the cut-off download to be logged")  # fmt: skip
    fetch_weights(settings, spec, backend="meta", token=TOKEN)
    rerun = hub.log(server="cdn", method="GET")[1:]
    assert [r.range for r in rerun] == [f"bytes={kept}-"]
    assert (root / "blobs" / pt.sha256).read_bytes() == pt.content


def test_huggingface_hub_s_own_leftovers_from_a_killed_run_are_removed(tmp_path, hub, spec):
    pt = _sam3(hub).files["sam3.pt"]
    settings = _settings(tmp_path, hub.url)
    blobs = _repo_dir(settings) / "blobs"
    blobs.mkdir(parents=True)
    leftover = blobs / f"{pt.sha256}.1a2b3c4d.incomplete"  # its per-process temporary name
    leftover.write_bytes(pt.content[:1000])
    assert fetch_weights(settings, spec, backend="meta", token=TOKEN).present
    assert not leftover.exists() and not list(blobs.glob("*.incomplete"))
    assert (blobs / pt.sha256).read_bytes() == pt.content


def test_a_server_that_ignores_range_restarts_the_file_cleanly(tmp_path, hub, spec):
    pt = _sam3(hub).files["sam3.pt"]
    pt.fail_after_bytes, pt.fail_times, pt.ignore_range = 300_000, 1, True
    settings = _settings(tmp_path, hub.url)
    status = fetch_weights(settings, spec, backend="meta", token=TOKEN)
    gets = hub.log(server="cdn", method="GET")
    assert len(gets) == 2 and gets[1].range is not None and gets[1].status == 200
    assert (_repo_dir(settings) / "blobs" / pt.sha256).read_bytes() == pt.content
    assert status.present


def test_a_mirror_in_hf_endpoint_serves_everything_and_the_hub_sees_nothing(tmp_path, hub, spec):
    files = {name: f.content for name, f in _sam3(hub).files.items()}
    vocab = hub.repos[("dataset", "giswqs/geospatial")].files[VOCAB].content
    mirror = sam3_hub(TOKEN, files, lfs=("sam3.pt", "model.safetensors"), vocab=vocab)
    try:
        settings = _settings(tmp_path, mirror.url)
        site = tmp_path / "site-packages"
        status = fetch_weights(settings, spec, backend="meta", token=TOKEN, site_packages=site)
        assert status.present and (site / "samgeo" / "assets" / VOCAB).read_bytes() == vocab
        assert mirror.log(server="hub") and mirror.log(server="cdn")
    finally:
        mirror.close()
    assert not hub.log(), "nothing went to the other Hub"


def test_a_second_model_is_fetched_on_demand_and_found_offline(tmp_path, hub, spec):
    sam31 = {"config.json": b'{"model_type": "sam3.1"}', "sam3.1_multiplex.pt": os.urandom(90_000)}
    repo = hub.add_repo("facebook/sam3.1", sam31, lfs=("sam3.1_multiplex.pt",), gated=True)
    repo.granted_tokens.add(TOKEN)
    settings = _settings(tmp_path, hub.url)
    assert model_weights(settings, spec, "facebook/sam3.1").missing == tuple(sam31)
    events: list[ProgressEvent] = []
    got = fetch_model(settings, spec, "facebook/sam3.1", token=TOKEN, progress=events.append)
    assert got.present and events[-1].done == events[-1].total == sum(map(len, sam31.values()))
    found = subprocess.run(
        [sys.executable, "-c", "import huggingface_hub as h; print(h.hf_hub_download("
         "'facebook/sam3.1', 'sam3.1_multiplex.pt'))"],
        env={**os.environ, "HF_HOME": str(settings.paths.hf_home), "HF_HUB_OFFLINE": "1"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert Path(found.stdout.strip()).read_bytes() == sam31["sam3.1_multiplex.pt"]
    with pytest.raises(ConfigError, match="Unknown model 'facebook/sam9'"):
        fetch_model(settings, spec, "facebook/sam9")


def test_a_missing_file_or_revision_names_what_the_hub_lacks(tmp_path, hub, spec):
    del _sam3(hub).files["sam3.pt"]
    settings = _settings(tmp_path, hub.url)
    with pytest.raises(WeightsError) as caught:
        fetch_weights(settings, spec, backend="meta", token=TOKEN)
    assert caught.value.message == f"The Hub at {hub.url.split('://')[1]} has no sam3.pt in {REPO}."
    assert "HF_ENDPOINT" in caught.value.hint
    with pytest.raises(WeightsError) as caught:
        fetch_model(settings, spec, "facebook/sam3.1", token=TOKEN)  # not on this mirror
    assert caught.value.message.endswith("has no repository facebook/sam3.1.")


def test_a_checksum_mismatch_is_refused_and_nothing_is_linked(tmp_path, hub, spec):
    pt = _sam3(hub).files["sam3.pt"]
    pt.wrong_sha = True
    settings = _settings(tmp_path, hub.url)
    with pytest.raises(WeightsIntegrityError, match="did not match the Hub's checksum"):
        fetch_weights(settings, spec, backend="meta", token=TOKEN)
    root = _repo_dir(settings)
    assert not (root / "snapshots" / _sam3(hub).commit / "sam3.pt").exists()
    assert not (root / "blobs" / pt.sha256).exists()
    assert not list(root.rglob("*.incomplete")) and not (root / "refs" / "main").exists()
    status = weights_status(settings, spec, backend="meta", site_packages=None)
    assert not status.present and not status.files


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (None, "The Hugging Face Hub refused access to facebook/sam3 (HTTP 401: no token was given)."),  # noqa: E501
        ("hf_NotAValidTokenAtAll00000000000000", "The Hugging Face Hub refused access to facebook/sam3 (HTTP 401: the token was rejected)."),  # noqa: E501
        ("hf_ValidButNotGrantedToken0000000000", "The Hugging Face Hub refused access to facebook/sam3 (HTTP 403)."),  # noqa: E501
    ],
)  # fmt: skip
def test_gated_refusals_are_one_sentence_with_the_licence_hint(
    tmp_path, hub, spec, token, expected
):
    hub.valid_tokens.add("hf_ValidButNotGrantedToken0000000000")
    settings = _settings(tmp_path, hub.url)
    with pytest.raises(GatedWeightsError) as caught:
        fetch_weights(settings, spec, backend="meta", token=token)
    error = caught.value
    assert error.message == expected
    assert "accept" in error.hint.lower() and "licence" in error.hint
    assert "https://huggingface.co/facebook/sam3" in error.hint
    assert error.server_message  # the Hub's own words, kept for diagnostics
    assert not hub.log(server="cdn") and not hub.log(method="GET")


def test_an_unreachable_endpoint_gives_the_offline_sentence(tmp_path, spec):
    port = _closed_port()
    settings = _settings(tmp_path, f"http://127.0.0.1:{port}")
    with pytest.raises(HubOfflineError) as caught:
        fetch_weights(settings, spec, backend="meta", token=TOKEN)
    assert caught.value.message == (
        f"Could not reach the Hugging Face Hub at 127.0.0.1:{port}: the connection was refused."
    )
    assert caught.value.hint == (
        "Connect to the internet, set HF_ENDPOINT to a mirror, "
        "or use a local checkpoint (--checkpoint / SAM3_CHECKPOINT_PATH)."
    )


def test_the_token_is_stored_0600_and_never_shows_up(tmp_path, hub, spec, caplog):
    caplog.set_level(logging.DEBUG)
    settings = _settings(tmp_path, hub.url)
    assert not token_configured(settings.paths, settings)
    store_token(settings.paths, f"  {TOKEN}\n")
    token_file = settings.paths.hf_home / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text() == TOKEN and load_token(settings.paths) == TOKEN
    assert token_configured(settings.paths, settings)
    assert not list(token_file.parent.glob(".token*"))  # no temporary copy left behind

    events: list[ProgressEvent] = []
    site = tmp_path / "site-packages"
    # No token argument: the stored one is used.
    status = fetch_weights(
        settings, spec, backend="meta", site_packages=site, progress=events.append
    )
    assert any(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub.log())
    _sam3(hub).granted_tokens.clear()
    shutil.rmtree(settings.paths.hf_home / "hub")
    with pytest.raises(GatedWeightsError) as caught:
        fetch_weights(settings, spec, backend="meta", site_packages=site, progress=events.append)
    env = weights_variables(settings, spec, status)

    seen = [
        caplog.text,
        *(record.getMessage() for record in caplog.records),
        str(caught.value),
        repr(caught.value),
        caught.value.server_message,
        *(event.to_json() for event in events),
        json.dumps(status.to_dict()),
        repr(status),
        json.dumps(env),
    ]
    assert caplog.records and events  # there was something to leak into
    assert not [text for text in seen if TOKEN in text]
    assert status.to_dict()["token_configured"] is True


def test_cancel_stops_quickly_and_a_rerun_resumes(tmp_path, hub, spec):
    pt = _sam3(hub).files["sam3.pt"]
    pt.rate_bytes_per_s = 400_000
    settings = _settings(tmp_path, hub.url)
    cancel, reached = CancelToken(), threading.Event()
    events: list[ProgressEvent] = []
    outcome: list[BaseException] = []

    def sink(event: ProgressEvent) -> None:
        events.append(event)
        if event.extra.get("file") == "sam3.pt" and event.extra["file_done"] >= 300_000:
            reached.set()

    def run() -> None:
        try:
            fetch_weights(settings, spec, backend="meta", token=TOKEN, progress=sink, cancel=cancel)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=run)
    worker.start()
    assert reached.wait(WAIT_S), "the download never got going"
    cancelled_at = time.monotonic()
    cancel.cancel()
    worker.join(WAIT_S)
    stopped_after_s = time.monotonic() - cancelled_at
    assert not worker.is_alive()
    assert stopped_after_s < 1.0
    assert len(outcome) == 1 and isinstance(outcome[0], WeightsCancelledError)
    assert isinstance(outcome[0], InstallCancelledError)
    # Progress was throttled: about 10 events a second at most, plus the file starts.
    assert len(events) <= 10 * (cancelled_at - started) + 4

    partial = _repo_dir(settings) / "blobs" / f"{pt.sha256}.incomplete"
    kept = partial.stat().st_size
    assert 300_000 <= kept < len(pt.content)
    pt.rate_bytes_per_s = None
    # The server logs a request when it is done with it: wait for the hung-up one.
    wait_until(
        lambda: len(hub.log(server="cdn", method="GET")) == 1,
        timeout_s=WAIT_S,
        what="the hung-up download to be logged",
    )
    before = len(hub.log(server="cdn", method="GET"))
    fetch_weights(settings, spec, backend="meta", token=TOKEN)
    assert [r.range for r in hub.log(server="cdn", method="GET")[before:]] == [f"bytes={kept}-"]
    assert (_repo_dir(settings) / "blobs" / pt.sha256).read_bytes() == pt.content


def test_a_rerun_with_everything_present_makes_no_requests(tmp_path, hub, spec):
    settings = _settings(tmp_path, hub.url)
    site = tmp_path / "site-packages"
    first = fetch_weights(settings, spec, backend="meta", token=TOKEN, site_packages=site)
    count = len(hub.log())
    events: list[ProgressEvent] = []
    second = fetch_weights(
        settings, spec, backend="meta", token=TOKEN, site_packages=site, progress=events.append
    )
    assert len(hub.log()) == count and not hub.log(method="GET")[count:]
    assert second == first and second.present
    assert events[-1].done == events[-1].total == first.total_bytes


def test_a_missing_blob_link_is_rebuilt_without_downloading(tmp_path, hub, spec):
    settings = _settings(tmp_path, hub.url)
    fetch_weights(settings, spec, backend="meta", token=TOKEN)
    pointer = _repo_dir(settings) / "snapshots" / _sam3(hub).commit / "sam3.pt"
    pointer.unlink()
    cdn_before = len(hub.log(server="cdn"))
    status = fetch_weights(settings, spec, backend="meta", token=TOKEN)
    assert status.present and pointer.is_symlink()
    assert len(hub.log(server="cdn")) == cdn_before


def test_the_checkpoint_route_needs_no_server(tmp_path, spec):
    checkpoint = tmp_path / "weights" / "sam3.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"\x80\x02fake torch checkpoint")
    port = _closed_port()
    settings = _settings(tmp_path, f"http://127.0.0.1:{port}", SAM3_CHECKPOINT_PATH=str(checkpoint))
    status = fetch_weights(settings, spec, backend="meta")
    assert status.route == "checkpoint" and status.present
    assert status.checkpoint_path == checkpoint and status.total_bytes == checkpoint.stat().st_size
    env = weights_variables(settings, spec, status)
    assert env["SAM3_CHECKPOINT_PATH"] == str(checkpoint) and env["HF_HUB_OFFLINE"] == "1"

    site = tmp_path / "site-packages"
    vocab = site / "samgeo" / "assets" / VOCAB
    with pytest.raises(HubOfflineError) as caught:
        fetch_weights(settings, spec, backend="meta", site_packages=site)
    assert "tokenizer vocabulary" in caught.value.message and VOCAB in caught.value.message
    assert "local checkpoint covers the weights, not the vocabulary" in caught.value.hint
    assert str(vocab.parent) in caught.value.hint
    pending = weights_status(settings, spec, backend="meta", site_packages=site)
    assert not pending.present and pending.missing == (VOCAB,)
    assert "HF_HUB_OFFLINE" not in weights_variables(settings, spec, pending)

    vocab.parent.mkdir(parents=True)
    vocab.write_bytes(b"vocabulary copied by hand")
    assert fetch_weights(settings, spec, backend="meta", site_packages=site).present


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.mkdir(), "is not a file"),
    ],
)
def test_a_bad_checkpoint_is_named_with_its_problem(tmp_path, spec, make, problem):
    checkpoint = tmp_path / "sam3.pt"
    make(checkpoint)
    settings = _settings(tmp_path, f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(WeightsError, match=f"checkpoint {checkpoint} {problem}"):
        fetch_weights(settings, spec, backend="meta", checkpoint=checkpoint)


def test_a_checkpoint_cannot_serve_the_transformers_backend(tmp_path, spec):
    checkpoint = tmp_path / "sam3.pt"
    checkpoint.write_bytes(b"weights")
    settings = _settings(tmp_path, "http://127.0.0.1:9")
    with pytest.raises(WeightsError, match="meta backend only"):
        fetch_weights(settings, spec, backend="transformers", checkpoint=checkpoint)


def test_weights_variables_go_offline_only_with_the_weights_present(tmp_path, hub, spec):
    settings = _settings(tmp_path, hub.url, HF_TOKEN=TOKEN)
    site = tmp_path / "site-packages"
    before = weights_status(settings, spec, backend="meta", site_packages=site)
    assert before.route == "none" and not before.present and before.token_configured
    env = weights_variables(settings, spec, before)
    assert env == {"HF_HOME": str(settings.paths.hf_home)}
    after = fetch_weights(settings, spec, backend="meta", site_packages=site)
    env = weights_variables(settings, spec, after)
    assert env == {"HF_HOME": str(settings.paths.hf_home), "HF_HUB_OFFLINE": "1"}
    assert TOKEN not in json.dumps(env)


def test_too_little_disk_is_refused_before_downloading(tmp_path, hub, spec):
    _sam3(hub).files["sam3.pt"].declared_size = 10**16
    settings = _settings(tmp_path, hub.url)
    with pytest.raises(WeightsError, match="Not enough free disk for the SAM 3 weights"):
        fetch_weights(settings, spec, backend="meta", token=TOKEN)
    assert not hub.log(server="cdn")


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,IP:127.0.0.2",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_an_untrusted_certificate_is_explained_and_a_ca_bundle_fixes_it(tmp_path, spec):
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = FakeHub(tls=context)
    try:
        server.valid_tokens.add(TOKEN)
        repo = server.add_repo(
            REPO, {"config.json": b"{}", "sam3.pt": b"x" * 5000}, lfs=("sam3.pt",)
        )
        settings = _settings(tmp_path, server.url)
        with pytest.raises(HubOfflineError) as caught:
            fetch_weights(settings, spec, backend="meta", token=TOKEN)
        assert caught.value.kind == "tls"
        assert caught.value.message.endswith("its TLS certificate is not trusted on this computer.")
        assert "GEOLIBRE_ML_CA_BUNDLE" in caught.value.hint
        assert "HF_HUB_DISABLE_XET=1" in caught.value.hint  # the switch for Xet behind inspection

        trusted = _settings(tmp_path, server.url, GEOLIBRE_ML_CA_BUNDLE=str(cert))
        status = fetch_weights(trusted, spec, backend="meta", token=TOKEN)
        assert status.present and status.commit == repo.commit
    finally:
        server.close()


def test_transport_errors_read_as_one_sentence_without_credentials(tmp_path):
    port = _closed_port()
    url = f"http://someone:s3cretPassw0rd@127.0.0.1:{port}/facebook/sam3"
    client = make_client(_settings(tmp_path, "http://unused"))
    with client, pytest.raises(httpx.TransportError) as caught:
        client.get(url)
    sentence = classify_transport_error(caught.value, url)
    assert sentence == f"Could not reach 127.0.0.1:{port}: the connection was refused."


def test_a_missing_ca_bundle_names_the_setting(tmp_path):
    settings = _settings(tmp_path, "http://unused", GEOLIBRE_ML_CA_BUNDLE=str(tmp_path / "no.pem"))
    with pytest.raises(ConfigError, match="GEOLIBRE_ML_CA_BUNDLE="):
        make_client(settings)


@pytest.mark.slow
def test_install_model_fetches_another_checkpoint_into_the_environment_hub_home(
    installer, hub, spec
):
    sam31 = {"config.json": b"{}", "sam3.1_multiplex.pt": os.urandom(50_000)}
    hub.add_repo("facebook/sam3.1", sam31, lfs=("sam3.1_multiplex.pt",), gated=True)
    hub.repos[("model", "facebook/sam3.1")].granted_tokens.add(TOKEN)
    unknown = installer.run("install", "--model", "facebook/sam9")
    assert unknown.returncode == 1 and "Unknown model 'facebook/sam9'" in unknown.stderr
    assert not list(Paths.resolve(installer.home).envs_dir.glob("*")), "refused before a build"
    proc = installer.run(
        "install", "--model", "facebook/sam3.1", "--token-stdin", stdin=TOKEN + "\n",
        env={"HF_ENDPOINT": hub.url},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "facebook/sam3.1 weights: ready." in proc.stdout
    assert TOKEN not in proc.stdout + proc.stderr
    settings = EnvSettings.from_environ({"GEOLIBRE_ML_HOME": str(installer.home)})
    assert model_weights(settings, spec, "facebook/sam3.1").present
