"""The plan's source check against real servers on loopback: a package index that
answers, one that never does, a closed port, a proxy that wants a password, a
certificate from a corporate-style CA; then ``install --dry-run`` and ``install``
as a person runs them. Nothing leaves this computer.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from geolibre_env.install.source_check import check_sources
from geolibre_env.model_env import active_environment
from geolibre_env.paths import Paths
from geolibre_env.settings import EnvSettings

from tests.conftest import CLOSED_HUB
from tests.env_manager.conftest import Installer
from tests.env_manager.http_proxy import AuthProxy, without_proxy_settings
from tests.env_manager.package_index import CertAuthority, PackageIndex, make_test_ca
from tests.harness.sidecar import base_env
from tests.standin.wheelhouse import build_wheelhouse

PROXY_USER, PROXY_PASSWORD = "bea", "Ch3ckPassw0rd"


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A port that takes connections (the kernel's backlog) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/simple"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when we return: connections are refused


def settings_with(home: Path, **env: str) -> EnvSettings:
    return EnvSettings.from_environ({"GEOLIBRE_ML_HOME": str(home), "PATH": "/usr/bin", **env})


@pytest.fixture
def index(wheelhouse: Path) -> Iterator[PackageIndex]:
    with PackageIndex(wheelhouse) as server:
        yield server


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return make_test_ca(tmp_path_factory.mktemp("check-ca"))


def test_every_source_is_asked_at_once_and_a_silent_one_costs_one_timeout(index, tmp_path):
    refused = f"http://127.0.0.1:{closed_port()}/simple"
    with silent_server() as slow_a, silent_server() as slow_b:
        started = time.monotonic()
        answers = check_sources(
            settings_with(tmp_path),
            [("torch", f"{slow_a}/torch/"), ("torch-fallback", f"{slow_b}/torch/"),
             ("weights", refused)],
            timeout_s=1.0,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    # Two silent servers asked one after the other would take two timeouts.
    assert elapsed < 1.8, elapsed
    assert [a.role for a in answers] == ["torch", "torch-fallback", "weights"]
    slow, also_slow, closed = answers
    assert (slow.answered, slow.kind, also_slow.kind) == (False, "timeout", "timeout")
    assert not closed.answered and closed.kind == "refused"
    assert "did not answer: the connection was refused" in closed.sentence()
    (packages,) = check_sources(
        settings_with(tmp_path), [("packages", f"{index.url}/segment-geospatial/")]
    )
    assert packages.answered and packages.status == 200 and packages.host == index.netloc
    assert ("GET", "/simple/segment-geospatial/", 200) in {
        (r.method, r.path, r.status) for r in index.log()
    }


def test_the_check_takes_the_install_proxy_and_names_it_when_it_wants_a_password(index, tmp_path):
    target = [("packages", f"{index.url}/segment-geospatial/")]
    with AuthProxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as proxy:
        (asked,) = check_sources(settings_with(tmp_path, HTTP_PROXY=proxy.url()), target)
        good = proxy.url(user=PROXY_USER, password=PROXY_PASSWORD)
        (through,) = check_sources(settings_with(tmp_path, HTTP_PROXY=good), target)
        log = proxy.log()
    assert not asked.answered and asked.kind == "proxy-auth"
    assert f"{proxy.netloc} asks for a user name and password (HTTP 407)" in asked.failure
    assert through.answered and through.status == 200
    assert [r.allowed for r in log] == [False, True]  # both went through the proxy
    assert PROXY_PASSWORD not in f"{asked} {through}"


def test_an_untrusted_certificate_is_named_and_the_extra_ca_makes_it_answer(
    wheelhouse, ca, tmp_path
):
    with PackageIndex(wheelhouse, tls=ca.server_context()) as https_index:
        target = [("torch", f"{https_index.url}/torch/")]
        (untrusted,) = check_sources(settings_with(tmp_path), target)
        trusted_settings = settings_with(tmp_path, GEOLIBRE_ML_CA_BUNDLE=str(ca.ca_cert))
        (trusted,) = check_sources(trusted_settings, target)
    assert not untrusted.answered and untrusted.kind == "tls"
    assert "certificate is not trusted" in untrusted.failure
    assert trusted.answered and trusted.status == 200


# ---------------------------------------------------------------------------
# The CLI, as a person runs it


@pytest.fixture
def online(ml_home: Path, marker: str, tmp_path: Path) -> Installer:
    extra = {"UV_CACHE_DIR": str(tmp_path / "uv-cache"), "HF_ENDPOINT": CLOSED_HUB}
    return Installer(ml_home, without_proxy_settings(base_env(ml_home, marker, extra)))


def test_dry_run_shows_each_source_checked_and_an_unreachable_hub_only_warns(online, index):
    mirrors = {"UV_INDEX_URL": index.url, "GEOLIBRE_ML_TORCH_INDEX_URL": index.url}
    proc = online.run("install", "--dry-run", env=mirrors)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"package index: {index.netloc} answered (HTTP 200" in out
    assert f"torch source: {index.netloc} answered (HTTP 200" in out
    assert "weights (Hub): 127.0.0.1:9 did not answer: the connection was refused" in out
    assert "The Hub (127.0.0.1:9) did not answer" in out  # a warning about weights...
    assert out.rstrip().endswith("Ready to install.")  # ...not a refusal to build


def test_a_dead_torch_source_stops_the_install_before_any_download(online, index):
    dead = f"http://127.0.0.1:{closed_port()}/simple"
    mirrors = {"UV_INDEX_URL": index.url, "GEOLIBRE_ML_TORCH_INDEX_URL": dead}
    plan = online.run("install", "--dry-run", env=mirrors)
    assert plan.returncode == 1
    assert "Not ready: 1 problem(s)." in plan.stdout
    host = dead.split("/")[2]
    sentence = f"Could not reach {host} (the connection was refused), while {index.netloc}"
    assert sentence in plan.stdout
    started = time.monotonic()
    install = online.run("install", "--no-weights", env=mirrors)
    assert install.returncode == 1
    assert time.monotonic() - started < 20  # the plan refuses; uv never runs
    assert sentence in install.stderr and "Traceback" not in install.stderr
    assert not [r for r in index.log() if r.path.startswith("/files/")]
    assert active_environment(Paths.resolve(online.home)) is None


# ---------------------------------------------------------------------------
# The torch step takes torch from the plan's source only


@pytest.mark.slow
def test_the_users_extra_indexes_do_not_redirect_the_torch_step(online, index, tmp_path):
    # A second index whose torch breaks on import: if uv took torch from it (uv
    # prefers UV_INDEX and UV_EXTRA_INDEX_URL to --index-url), verify would fail.
    rogue_wheels = tmp_path / "rogue-wheels"
    build_wheelhouse(rogue_wheels, broken=("torch",))
    with PackageIndex(rogue_wheels) as rogue:
        env = {
            "UV_INDEX_URL": index.url,
            "GEOLIBRE_ML_TORCH_INDEX_URL": index.url,
            "UV_INDEX": rogue.url,
            "UV_EXTRA_INDEX_URL": rogue.url,
        }
        proc = online.run("install", "--no-weights", env=env, timeout_s=300)
        rogue_files = [r.path for r in rogue.log() if r.path.startswith("/files/torch-")]
    assert proc.returncode == 0, proc.stderr
    assert not rogue_files
    assert any(r.path.startswith("/files/torch-2.14.1") for r in index.log() if r.status == 200)
    active = active_environment(Paths.resolve(online.home))
    assert active is not None and active.verify.get("torch") == "2.14.1+standin"
