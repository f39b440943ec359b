"""The offline bundle round trip: exported on a "connected" machine (a loopback index
serving the stand-in wheelhouse over TLS, a fake Hub for the weights), installed on a
machine with no network at all (the installer runs in a network namespace of its own,
``unshare -rn``), and refused - with nothing installed - when damaged."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from geolibre_env.backend.launch import managed_launch_variables
from geolibre_env.install.bundle.archive import MANIFEST, file_digest
from geolibre_env.install.bundle.export import hub_launcher
from geolibre_env.install.bundle.target import describe_target
from geolibre_env.install.verify import run_probe
from geolibre_env.machine.detect import normalize_arch, os_name
from geolibre_env.model_env import active_environment
from geolibre_env.paths import Paths
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import load_spec
from geolibre_env.uv.runner import UvTool

from tests.conftest import CLOSED_HUB
from tests.env_manager.conftest import Installer
from tests.env_manager.fake_hub import SAM3_REPO, VOCAB, VOCAB_REPO, sam3_hub
from tests.env_manager.http_proxy import without_proxy_settings
from tests.env_manager.package_index import PackageIndex, make_test_ca
from tests.harness.sidecar import base_env

pytestmark = pytest.mark.slow

TOKEN = "hf_BundleTestToken0123456789abcdefXYZ"
WEIGHT_FILES = {
    "config.json": b'{"model_type": "sam3"}\n',
    "model.safetensors": os.urandom(300_000),
    "processor_config.json": b"{}\n",
}


def _no_network_prefix() -> list[str]:
    """``unshare -rn``: a user and network namespace with only a downed loopback."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is needed to run the installer without a network")
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip(f"unshare -rn is not permitted here: {probe.stderr.decode().strip()}")
    return [unshare, "-rn"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[dict]:
    """One export, as a connected machine makes it; the archive and what it reported."""
    root = tmp_path_factory.mktemp("connected")
    ca = make_test_ca(root / "ca")
    hub = sam3_hub(TOKEN, WEIGHT_FILES, lfs=("model.safetensors",), vocab=os.urandom(4000))
    repo, vocab = hub.repos[("model", SAM3_REPO)], hub.repos[("dataset", VOCAB_REPO)]
    home = root / "Usuário de teste" / "exporter home"
    with PackageIndex(wheelhouse, tls=ca.server_context()) as index:
        env = without_proxy_settings(base_env(home, "gltest-bundle-export", {
            "UV_INDEX_URL": index.url, "GEOLIBRE_ML_TORCH_INDEX_URL": index.url,
            "GEOLIBRE_ML_CA_BUNDLE": str(ca.ca_cert), "HF_ENDPOINT": hub.url,
            "UV_CACHE_DIR": str(root / "uv-cache"),
            # The stand-in index has no huggingface_hub for `uv run --with`: ours fetches.
            "GEOLIBRE_ML_HUB_PYTHON": sys.executable,
        }))  # fmt: skip
        exporter = Installer(home, env)
        output = root / "out dir" / "geolibre bundle.tar"
        proc = exporter.run(
            "bundle", "export", "--output", str(output), "--token-stdin", "--json",
            stdin=TOKEN + "\n",
        )  # fmt: skip
        other = exporter.run(
            "bundle", "export", "--os", "windows", "--arch", "x86_64", "--python", "3.12",
            "--output", str(root / "windows.tar"), "--json", "--token-stdin", stdin=TOKEN + "\n",
        )  # fmt: skip
    hub.close()
    assert proc.returncode == 0, proc.stderr
    assert other.returncode == 0, other.stderr
    yield {
        "path": output,
        "result": json.loads(proc.stdout),
        "windows": root / "windows.tar",
        "repo": repo,
        "vocab": vocab.files[VOCAB].content,
    }


@pytest.fixture
def offline(ml_home: Path, marker: str, tmp_path: Path) -> Installer:
    extra = {"UV_CACHE_DIR": str(tmp_path / "uv"), "HF_ENDPOINT": CLOSED_HUB}
    env = base_env(ml_home, marker, extra)
    return Installer(ml_home, without_proxy_settings(env))


def _install_offline(installer: Installer, bundle: Path) -> subprocess.CompletedProcess[str]:
    argv = [*_no_network_prefix(), *installer.command("install", "--from", str(bundle), "--json")]
    return subprocess.run(
        argv, env=installer.env, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as archive:
        return {member.name: member for member in archive.getmembers()}


def test_the_export_is_one_archive_with_a_checksum_for_every_file(exported):
    path, result = exported["path"], exported["result"]
    assert result["sha256"] == file_digest(path)[0] and result["size"] == path.stat().st_size
    # This Linux machine without a GPU: the package index's cu130 wheel, run on the CPU.
    assert result["target"]["build"] == "cu130" and result["target"]["backend"] == "transformers"
    members = _members(path)
    assert next(iter(members)) == MANIFEST, "the manifest comes first: it is read first"
    with tarfile.open(path) as archive:
        manifest = json.loads(archive.extractfile(MANIFEST).read())  # type: ignore[union-attr]
        for name, item in manifest["files"].items():
            data = archive.extractfile(name).read()  # type: ignore[union-attr]
            assert len(data) == item["size"]
            assert hashlib.sha256(data).hexdigest() == item["sha256"]
    wheels = sorted(n[7:].split("-")[0] for n in manifest["files"] if n.startswith("wheels/"))
    assert wheels == ["segment_geospatial", "torch", "torchvision"]
    weights = {f["name"] for f in manifest["weights"]["files"]}
    assert weights == {"config.json", "model.safetensors", "processor_config.json"}
    assert manifest["weights"]["commit"] == exported["repo"].commit
    assert manifest["vocab"] == f"vocab/{VOCAB}"
    assert manifest["plan"]["torch_build"]["name"] == "cu130"
    assert set(manifest["files"]) == set(members) - {MANIFEST}
    with tarfile.open(exported["windows"]) as archive:
        windows = json.loads(archive.extractfile(MANIFEST).read())  # type: ignore[union-attr]
    assert windows["target"]["platform"] == "x86_64-pc-windows-msvc"
    assert windows["target"]["python"] == "3.12"


def test_install_from_the_bundle_works_with_no_network_at_all(offline, exported):
    proc = _install_offline(offline, exported["path"])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["outcome"] == "installed" and result["complete"], result
    assert result["plan"]["sources"]["packages"]["setting"] == "--from"
    settings = EnvSettings.from_environ({"GEOLIBRE_ML_HOME": str(offline.home)})
    active = active_environment(settings.paths)
    assert active is not None and run_probe(active.python, ("samgeo", "samgeo.api")).ok
    snapshot = (
        settings.paths.hf_home / "hub" / "models--facebook--sam3" / "snapshots"
        / exported["repo"].commit
    )  # fmt: skip
    for name, content in WEIGHT_FILES.items():
        assert (snapshot / name).read_bytes() == content
    assert active.site_packages is not None
    assert (active.site_packages / "samgeo" / "assets" / VOCAB).read_bytes() == exported["vocab"]
    assert managed_launch_variables(settings, active)["HF_HUB_OFFLINE"] == "1"
    assert not (settings.paths.cache / "bundle-staging").exists()


def _damaged_copy(
    source: Path, dest: Path, *, flip_in: str | None = None, keep: float = 1.0
) -> Path:
    data = bytearray(source.read_bytes())
    if flip_in is not None:
        member = next(m for name, m in _members(source).items() if name.startswith(flip_in))
        data[member.offset_data + member.size // 2] ^= 0x01  # one byte of a wheel
    dest.write_bytes(bytes(data[: int(len(data) * keep)]))
    return dest


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"flip_in": "wheels/torch-"}, "does not match its checksum"),
        ({"keep": 0.5}, "is incomplete or damaged (it ends early or is not a tar archive)"),
    ],
    ids=["one-byte-changed", "truncated"],
)
def test_a_damaged_bundle_is_refused_and_nothing_is_installed(
    offline, exported, tmp_path, damage, message
):
    bad = _damaged_copy(exported["path"], tmp_path / "copy.tar", **damage)
    proc = _install_offline(offline, bad)
    assert proc.returncode == 1
    assert message in proc.stderr and "nothing was installed" in proc.stderr
    paths = Paths.resolve(offline.home)
    assert not paths.active_pointer.exists()
    assert not paths.envs_dir.exists() or not any(paths.envs_dir.iterdir())
    assert not (paths.hf_home / "hub").exists()
    assert not (paths.cache / "bundle-staging").exists()
    last = json.loads(paths.last_install.read_text(encoding="utf-8"))
    assert last["failure"]["kind"] == "checksum"


def test_a_bundle_for_another_computer_is_refused_before_anything_is_built(offline, exported):
    proc = _install_offline(offline, exported["windows"])
    assert proc.returncode == 1
    here = f"{os_name(platform.system())} {normalize_arch(platform.machine())}"
    assert f"is for windows x86_64, and this computer is {here}." in proc.stderr
    assert "bundle export" in proc.stderr
    assert not Paths.resolve(offline.home).active_pointer.exists()


def test_a_dry_run_says_what_a_bundle_is_for_and_installs_nothing(offline, exported):
    proc = offline.run("install", "--from", str(exported["path"]), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    target = exported["result"]["target"]
    assert f"for {describe_target(target)}; 7 files" in proc.stdout
    assert not Paths.resolve(offline.home).envs_dir.exists()


def test_without_a_model_environment_uv_runs_the_spec_s_huggingface_hub(tmp_path):
    spec = load_spec()
    uv = UvTool(path="uv", version=(0, 13, 9))
    launcher = hub_launcher(uv, spec)
    pins = set(spec.constraints_path.read_text().split()) if spec.constraints_path else set()
    assert launcher[:4] == ["uv", "run", "--no-project", "--quiet"] and launcher[-1] == "python"
    wanted = {arg for arg in launcher if "==" in arg}
    assert {name.split("==")[0] for name in wanted} == {"hf-xet", "huggingface_hub"}
    assert wanted <= pins, "the model environment's exact versions"
