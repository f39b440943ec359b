"""Installs on real networks, with real servers on loopback: a package index behind a
TLS certificate from a corporate-style CA, a proxy that asks for a password, a mirror
that lacks a package; the real plan, real uv, our real weights client.

Measured first (uv 0.13.9): uv sends requests for 127.0.0.1 through HTTPS_PROXY
like any other host (CONNECT 127.0.0.1:port; no built-in loopback bypass, only
NO_PROXY), so the index and the fake Hub can sit on 127.0.0.1 behind the proxy.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from geolibre_env.errors import ConfigError
from geolibre_env.install.verify import run_probe
from geolibre_env.model_env import active_environment
from geolibre_env.paths import Paths
from geolibre_env.proxies import ProxyConfig, bypassed
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import load_spec
from geolibre_env.uv.runner import UvTool, uv_environment
from geolibre_env.weights.hub_errors import HubOfflineError
from geolibre_env.weights.sam3 import fetch_weights

from tests.conftest import CLOSED_HUB
from tests.env_manager.conftest import Installer
from tests.env_manager.fake_hub import FakeHub, sam3_hub
from tests.env_manager.http_proxy import AuthProxy, ProxyRequest, without_proxy_settings
from tests.env_manager.package_index import CertAuthority, PackageIndex, make_test_ca
from tests.harness.sidecar import base_env

TOKEN = "hf_NetworkTestToken0123456789abcdefXYZ"
PROXY_USER, PROXY_PASSWORD = "alice", "Pr0xyPassw0rd"
UV_013 = UvTool(path="uv", version=(0, 13, 9))


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return make_test_ca(tmp_path_factory.mktemp("corporate-ca"))


@pytest.fixture
def online(ml_home: Path, marker: str, tmp_path: Path) -> Installer:
    """The CLI with nothing offline: no UV_OFFLINE/UV_NO_INDEX/UV_FIND_LINKS, its own cache."""
    extra = {"UV_CACHE_DIR": str(tmp_path / "uv-cache"), "HF_ENDPOINT": CLOSED_HUB,
             "GEOLIBRE_ML_HUB_PYTHON": sys.executable}  # fmt: skip
    return Installer(ml_home, without_proxy_settings(base_env(ml_home, marker, extra)))


@pytest.fixture
def https_index(wheelhouse: Path, ca: CertAuthority) -> Iterator[PackageIndex]:
    with PackageIndex(wheelhouse, tls=ca.server_context()) as index:
        yield index


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    files = {
        "config.json": b'{"model_type": "sam3"}\n',
        "model.safetensors": os.urandom(200_000),
        "processor_config.json": b"{}\n",
        "README.md": b"# SAM 3\n",
    }
    server = sam3_hub(TOKEN, files, lfs=("model.safetensors",), vocab=os.urandom(5000))
    yield server
    server.close()


def _last_install(installer: Installer) -> dict:
    return json.loads(Paths.resolve(installer.home).last_install.read_text(encoding="utf-8"))


def _assert_works(installer: Installer) -> None:
    active = active_environment(Paths.resolve(installer.home))
    assert active is not None
    assert run_probe(active.python, ("samgeo", "samgeo.api")).ok


@pytest.mark.slow
def test_tls_inspection_is_refused_by_name_until_its_root_certificate_is_given(
    online, https_index, ca
):
    port = https_index.port
    mirrors = {"UV_INDEX_URL": https_index.url, "GEOLIBRE_ML_TORCH_INDEX_URL": https_index.url}
    # Even with uv's "skip verification for this host" set, the check stays on.
    refused = online.run(
        "install", "--no-weights", env={**mirrors, "UV_INSECURE_HOST": f"127.0.0.1:{port}"}
    )
    assert refused.returncode == 1
    assert (
        f"The secure connection to 127.0.0.1:{port} failed its certificate check: the "
        f"certificate is not signed by an authority this computer trusts." in refused.stderr
    )
    assert "GEOLIBRE_ML_CA_BUNDLE" in refused.stderr
    assert "UV_INSECURE_HOST is set but ignored" in refused.stderr
    assert not [r for r in https_index.log() if r.path.startswith("/files/")]
    assert active_environment(Paths.resolve(online.home)) is None
    assert _last_install(online)["failure"]["kind"] == "certificate"

    doctor = json.loads(
        online.run(
            "doctor", "--json", env={**mirrors, "UV_INSECURE_HOST": f"127.0.0.1:{port}"}
        ).stdout
    )
    checks = {check["id"]: check for check in doctor["checks"]}
    assert "failed its certificate check" in checks["install"]["detail"]
    assert checks["install"]["fix"].startswith("If your organisation inspects TLS")
    assert checks["network"]["status"] == "warning"
    assert "UV_INSECURE_HOST" in checks["network"]["detail"]
    assert f"packages from {https_index.url} (UV_INDEX_URL)" in checks["network"]["detail"]

    trusted_env = {**mirrors, "GEOLIBRE_ML_CA_BUNDLE": str(ca.ca_cert)}
    trusted = online.run("install", "--no-weights", env=trusted_env)
    assert trusted.returncode == 0, trusted.stderr
    _assert_works(online)
    fetched = {r.path for r in https_index.log() if r.status == 200}
    assert any(p.startswith("/files/torch-2.14.1") for p in fetched)
    assert any(p.startswith("/files/segment_geospatial") for p in fetched)


@pytest.mark.slow
def test_a_proxy_that_wants_a_password_is_named_and_with_it_carries_packages_and_weights(
    online, https_index, ca, hub
):
    settings = {
        "UV_INDEX_URL": https_index.url,
        "GEOLIBRE_ML_TORCH_INDEX_URL": https_index.url,
        "GEOLIBRE_ML_CA_BUNDLE": str(ca.ca_cert),
        "HF_ENDPOINT": hub.url,
        "UV_HTTP_RETRIES": "0",  # uv retries a refused tunnel 3 times (5.5 s) by default
    }
    with AuthProxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as proxy:

        def via(url: str) -> dict[str, str]:
            return {**settings, "HTTPS_PROXY": url, "HTTP_PROXY": url}

        asked = online.run("install", "--no-weights", env=via(proxy.url()))
        assert asked.returncode == 1
        assert (
            f"The proxy {proxy.netloc} asks for a user name and password (HTTP 407)."
            in asked.stderr
        )
        wrong = online.run(
            "install", "--no-weights", env=via(proxy.url(user=PROXY_USER, password="Wr0ngPass"))
        )
        assert wrong.returncode == 1
        assert (
            f"The proxy {proxy.netloc} refused the user name and password in HTTPS_PROXY "
            f"(HTTP 407)." in wrong.stderr
        )
        assert _last_install(online)["failure"]["kind"] == "proxy-auth"
        assert not [r for r in proxy.log() if r.allowed]

        good = via(proxy.url(user=PROXY_USER, password=PROXY_PASSWORD))
        done = online.run("install", "--token-stdin", stdin=TOKEN + "\n", env=good)
        assert done.returncode == 0, done.stderr
        assert "SAM 3 weights: ready." in done.stdout
        log = proxy.log()
    # Packages went through the tunnel, the weights (plain http here) as proxied GETs.
    assert ProxyRequest("CONNECT", https_index.netloc, True) in log
    hub_requests = [r for r in log if r.allowed and r.target.startswith(hub.url)]
    assert {r.method for r in hub_requests} >= {"HEAD", "GET"}
    assert any(r.target.startswith(hub.cdn_url) for r in log if r.allowed)
    assert len(hub.log()) >= len(hub_requests)
    _assert_works(online)
    logs = Paths.resolve(online.home).logs
    for text in (asked.stderr, wrong.stderr, done.stderr, done.stdout, *_texts(logs)):
        assert PROXY_PASSWORD not in text and "Wr0ngPass" not in text


def _texts(folder: Path) -> list[str]:
    return [p.read_text(encoding="utf-8", errors="replace") for p in folder.glob("*.log*")]


@pytest.mark.slow
def test_a_mirror_without_a_package_names_the_package_and_the_mirror(online, wheelhouse):
    with PackageIndex(wheelhouse, omit=("torchvision",)) as mirror:
        mirrors = {"UV_INDEX_URL": mirror.url, "GEOLIBRE_ML_TORCH_INDEX_URL": mirror.url}
        proc = online.run("install", "--no-weights", env=mirrors)
    assert proc.returncode == 1
    assert (
        f"The package torchvision is not available from the mirror {mirror.netloc} "
        f"(GEOLIBRE_ML_TORCH_INDEX_URL)." in proc.stderr
    )
    assert _last_install(online)["failure"]["kind"] == "missing-package"


def test_the_plan_shows_every_source_without_credentials(online):
    env = {
        "UV_INDEX_URL": "https://bob:MirrorPassw0rd@pypi.corp.example/simple",
        "GEOLIBRE_ML_TORCH_INDEX_URL": "https://torch.corp.example/whl/{build}",
        "HF_ENDPOINT": "https://hf.corp.example",
        "HTTPS_PROXY": f"http://{PROXY_USER}:{PROXY_PASSWORD}@proxy.corp.example:3128",
        "NO_PROXY": "localhost,.corp.example",
    }
    data = json.loads(online.run("install", "--dry-run", "--json", env=env).stdout)
    sources = data["sources"]
    assert sources["packages"] == {
        "url": "https://pypi.corp.example/simple",
        "setting": "UV_INDEX_URL",
    }
    assert sources["torch"] == {
        "url": "https://torch.corp.example/whl/cpu",
        "setting": "GEOLIBRE_ML_TORCH_INDEX_URL",
    }
    assert sources["weights"] == {"url": "https://hf.corp.example", "setting": "HF_ENDPOINT"}
    assert sources["proxy"]["https_proxy"] == "http://proxy.corp.example:3128"
    assert sources["proxy"]["from"] == "environment"
    text = online.run("install", "--dry-run", env=env).stdout
    assert "packages from https://pypi.corp.example/simple (UV_INDEX_URL)" in text
    assert "weights from https://hf.corp.example (HF_ENDPOINT)" in text
    for secret in ("MirrorPassw0rd", PROXY_PASSWORD, "bob:", f"{PROXY_USER}:"):
        assert secret not in text and secret not in json.dumps(data)


# The weights client (httpx) through the same proxy, without uv ------------------------
def _settings(tmp_path: Path, **environ: str) -> EnvSettings:
    return EnvSettings.from_environ({"GEOLIBRE_ML_HOME": str(tmp_path / "home"), **environ})


@pytest.mark.parametrize("tls", [False, True], ids=["http-hub", "https-hub-through-connect"])
def test_the_weights_download_names_a_proxy_that_wants_a_password(tmp_path, ca, tls):
    server = FakeHub(tls=ca.server_context() if tls else None)
    server.add_repo("facebook/sam3", {"config.json": b"{}", "sam3.pt": b"x" * 5000})
    try:
        with AuthProxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as proxy:
            settings = _settings(
                tmp_path,
                HF_ENDPOINT=server.url,
                GEOLIBRE_ML_CA_BUNDLE=str(ca.ca_cert),
                HTTPS_PROXY=proxy.url(),
                HTTP_PROXY=proxy.url(),
            )
            with pytest.raises(HubOfflineError) as caught:
                fetch_weights(settings, load_spec(), backend="meta")
            log = proxy.log()
    finally:
        server.close()
    host = server.url.split("://")[1]
    assert caught.value.kind == "proxy-auth"
    assert caught.value.message == (
        f"Could not reach the Hugging Face Hub at {host}: the proxy {proxy.netloc} asks for a "
        f"user name and password (HTTP 407)."
    )
    assert "http://user:password@host:port" in caught.value.hint
    assert log and log[0].method == ("CONNECT" if tls else "HEAD") and not log[0].allowed
    assert not server.log()


def test_no_proxy_sends_the_weights_direct(tmp_path):
    server = FakeHub()
    files = {"config.json": b"{}", "sam3.pt": b"x" * 5000}
    server.add_repo("facebook/sam3", files, lfs=("sam3.pt",))
    try:
        with AuthProxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as proxy:
            settings = _settings(
                tmp_path,
                HF_ENDPOINT=server.url,
                HTTP_PROXY=proxy.url(),
                NO_PROXY="127.0.0.1,127.0.0.2",
            )
            status = fetch_weights(settings, load_spec(), backend="meta")
            assert not proxy.log()
    finally:
        server.close()
    assert status.route == "hub" and status.commit is not None


# What uv is given -------------------------------------------------------------------
def test_uv_gets_the_system_store_the_extra_ca_and_never_an_insecure_host(tmp_path, ca):
    settings = _settings(
        tmp_path,
        GEOLIBRE_ML_CA_BUNDLE=str(ca.ca_cert),
        UV_INSECURE_HOST="pypi.org",
        UV_NATIVE_TLS="1",
        https_proxy="http://proxy.corp.example:3128",
        NO_PROXY="localhost",
    )
    env = uv_environment(settings, uv=UV_013)
    assert "UV_INSECURE_HOST" not in env and "UV_NATIVE_TLS" not in env
    assert env["UV_SYSTEM_CERTS"] == "1"
    bundle = Path(env["SSL_CERT_FILE"])
    assert bundle.is_relative_to(settings.paths.cache)
    text = bundle.read_text(encoding="ascii", errors="replace")
    assert ca.ca_cert.read_text(encoding="ascii").strip() in text
    assert text.count("BEGIN CERTIFICATE") > 10, "the usual roots stay trusted too"
    assert env["HTTPS_PROXY"] == env["https_proxy"] == "http://proxy.corp.example:3128"
    assert env["NO_PROXY"] == env["no_proxy"] == "localhost"
    # uv before 0.11 only knows the old name of the same switch.
    assert uv_environment(settings, uv=UvTool("uv", (0, 10, 4)))["UV_NATIVE_TLS"] == "1"


def test_a_ca_bundle_that_is_not_pem_names_the_setting(tmp_path):
    junk = tmp_path / "corp-root.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="GEOLIBRE_ML_CA_BUNDLE="):
        uv_environment(_settings(tmp_path, GEOLIBRE_ML_CA_BUNDLE=str(junk)), uv=UV_013)


def test_proxy_settings_follow_curl_and_urllib():
    config = ProxyConfig.from_environ(
        {"HTTPS_PROXY": "http://upper:3128", "https_proxy": "http://lower:3128"}
    )
    assert config.for_scheme("https") == "http://lower:3128" and config.source == "environment"
    # NO_PROXY alone names no proxy (the OS settings would be asked; on Linux: none).
    assert ProxyConfig.from_environ({"NO_PROXY": "localhost"}).values.get("HTTPS_PROXY") is None
    rules = ("localhost", ".corp.example", "10.0.0.0/8", "mirror.lan:8443")
    assert bypassed("pypi.corp.example", 443, rules)
    assert bypassed("10.1.2.3", 443, rules)
    assert bypassed("mirror.lan", 8443, rules) and not bypassed("mirror.lan", 443, rules)
    assert not bypassed("pypi.org", 443, rules)
    assert bypassed("anything", None, ("*",))
