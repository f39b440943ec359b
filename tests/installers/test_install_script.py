"""The one-click installer run for real from the checkout: uv, the geolibre-ml
command, the model env from the stand-in wheelhouse, the doctor's verdict;
interrupted, starved of packages, given a token. (The PowerShell twin is held
to the same flags and messages in test_script_parity.py.)

Where the packages come from, offline: the model env from the test wheelhouse
(``offline_install_env``); the geolibre-ml command's own dependencies (httpx,
psutil, uv, ...) from the uv cache that ``uv sync`` filled for the development
environment (``uv cache dir``), reached through ``XDG_CACHE_HOME`` so that only
that step reads it. ``UV_CACHE_DIR`` is left unset (it would send both steps
to one cache), so the model env uses the env manager's own cache under
``GEOLIBRE_ML_HOME``, and ``UV_NO_INDEX`` too (it would hide the cached index
pages that the command's resolution needs).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from geolibre_env.install.lock import InstallLock
from geolibre_env.paths import Paths

from tests.conftest import offline_install_env
from tests.harness.processes import MARKER_VAR, with_marker
from tests.harness.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
SH = ROOT / "installers" / "install-model-backend.sh"
SYSTEM_DIRS = ("/usr/bin", "/bin")  # bash, coreutils, perl; never a uv of ours
SCRIPT_TIMEOUT_S = 300
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="the .sh installer is for POSIX")


def dev_uv() -> Path:
    return Path(sys.executable).with_name("uv.exe" if sys.platform == "win32" else "uv")


def base_python() -> Path:
    """The interpreter the dev venv was made from: a Python with venv and pip."""
    bindir = Path(sys.base_prefix) / "bin"
    for name in (f"python{sys.version_info[0]}.{sys.version_info[1]}", "python3"):
        if (bindir / name).exists():
            return (bindir / name).resolve()
    pytest.skip(f"no base interpreter under {bindir}")


@pytest.fixture(scope="session")
def dev_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An XDG_CACHE_HOME whose ``uv`` is the development environment's uv cache."""
    found = subprocess.run(
        [str(dev_uv()), "cache", "dir"], capture_output=True, text=True, check=True, timeout=30
    )
    cache = Path(found.stdout.strip())
    if cache.name == "uv":
        return cache.parent
    home = tmp_path_factory.mktemp("xdg-cache")
    (home / "uv").symlink_to(cache, target_is_directory=True)
    return home


@dataclass
class Machine:
    """A fresh user on this computer: own HOME, no uv on PATH, offline settings."""

    ml_home: Path
    home: Path
    env: dict[str, str]

    @property
    def data(self) -> Path:
        return self.ml_home / "data"

    @property
    def cli(self) -> Path:
        return self.data / "bin" / "geolibre-ml"

    def run(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SH), *args],
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_S,
        )

    def status(self) -> dict:
        proc = subprocess.run(
            [str(self.cli), "status", "--json"], env=self.env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)


@pytest.fixture
def machine(
    tmp_path: Path, wheelhouse: Path, dev_cache_home: Path, marker: str
) -> Iterator[Machine]:
    user = tmp_path / "Usuário de teste"  # a space and a non-ASCII letter, as in many homes
    home, ml_home, bindir = user / "home", user / "geolibre ml", tmp_path / "bin"
    for folder in (home, bindir):
        folder.mkdir(parents=True)
    (bindir / "python3").symlink_to(base_python())
    path = [str(bindir), *(d for d in SYSTEM_DIRS if not (Path(d) / "uv").exists())]
    dropped = ("GEOLIBRE_", "HF_", "UV_", "PIP_", "XDG_", "PYTHON", "VIRTUAL_ENV")
    # UV is the uv that `uv run` exported: geolibre-ml would take it as its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped) and k != "UV"}
    offline = offline_install_env(wheelhouse, tmp_path / "unused")
    env.update({k: v for k, v in offline.items() if k not in ("UV_CACHE_DIR", "UV_NO_INDEX")})
    env.update(
        HOME=str(home),
        PATH=os.pathsep.join(path),
        GEOLIBRE_ML_HOME=str(ml_home),
        XDG_CACHE_HOME=str(dev_cache_home),
        PIP_CACHE_DIR=str(tmp_path / "pip-cache"),  # the bootstrap must not touch the real one
        **{MARKER_VAR: marker},
    )
    yield Machine(ml_home=ml_home, home=home, env=env)
    # uv runs in its own session (so a cancel can stop its tree): a failed test's
    # leftovers must not load the machine for the tests after it.
    for proc in with_marker(marker):
        with contextlib.suppress(psutil.Error):
            proc.kill()


def project_files() -> set[str]:
    """What is in the project folder the command is installed from (builds must not write)."""
    found = set()
    for folder in (ROOT / "env-manager", ROOT / "installers"):
        for path in folder.rglob("*"):
            if "__pycache__" not in path.parts:
                found.add(str(path.relative_to(ROOT)))
    return found


# ---------------------------------------------------------------- real runs
@posix_only
@pytest.mark.slow
def test_installs_from_the_checkout_and_a_second_run_is_quick(machine):
    before = project_files()
    started = time.monotonic()
    first = machine.run("--no-weights", "--yes", env={"GEOLIBRE_ML_UV": str(dev_uv())})
    first_s = time.monotonic() - started
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout.splitlines()
    assert "(GEOLIBRE_ML_UV)" in first.stdout
    sam3 = next(i for i, line in enumerate(out) if line.strip().startswith("SAM 3:"))
    installed = next(i for i, line in enumerate(out) if line.endswith(": installed."))
    assert sam3 < installed, "the plan's SAM 3 line comes before anything is installed"
    assert "meta backend cannot run here" in out[sam3]  # this computer has no NVIDIA GPU
    # The sources were checked before anything was downloaded: the closed Hub is a warning.
    hub = next(i for i, line in enumerate(out) if "weights (Hub): 127.0.0.1:9 did not" in line)
    warned = next(i for i, line in enumerate(out) if "- The Hub (127.0.0.1:9) did not" in line)
    assert hub < installed and warned < installed
    assert out[-1].startswith("Verdict: INCOMPLETE (SAM 3 weights skipped with --no-weights).")
    status = machine.status()
    assert status["installed"] and status["environment"]["torch"] == "2.14.1+standin"
    assert project_files() == before, "nothing was written into the project folder"
    assert not any(machine.home.iterdir()), "everything went under GEOLIBRE_ML_HOME"

    started = time.monotonic()
    second = machine.run("--no-weights", "--yes", env={"GEOLIBRE_ML_UV": str(dev_uv())})
    second_s = time.monotonic() - started
    assert second.returncode == 0, second.stdout + second.stderr
    assert "is already installed in" in second.stdout  # the geolibre-ml command
    assert "already installed and verified" in second.stdout  # the model environment
    assert second.stdout.splitlines()[-1] == out[-1]
    assert machine.status()["environment"]["name"] == status["environment"]["name"]
    assert second_s < first_s, f"second run {second_s:.1f} s, first {first_s:.1f} s"


@posix_only
@pytest.mark.slow
def test_bootstraps_uv_with_pip_when_there_is_none(machine):
    """Needs PyPI for the one pip download of uv (CI reaches it)."""
    offline = machine.env
    machine.env = {k: v for k, v in offline.items() if k not in ("UV_OFFLINE", "UV_FIND_LINKS")}
    first = machine.run("--dry-run")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "uv was not found: installing it with" in first.stdout
    assert "(installed now)" in first.stdout
    assert (machine.data / "cli" / "uv" / "uv").is_file()
    assert "  SAM 3:" in first.stdout and "Install plan for" in first.stdout
    assert first.stdout.splitlines()[-1].startswith("Dry run:")
    assert not machine.status()["installed"], "a dry run installs no model environment"
    machine.env = offline  # the uv bootstrapped before serves offline runs
    again = machine.run("--dry-run")
    assert again.returncode == 0, again.stderr
    assert "(installed by an earlier run)" in again.stdout
    assert "uv was not found" not in again.stdout


def _follow(proc: subprocess.Popen[str], lines: list[str]) -> threading.Thread:
    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@posix_only
@pytest.mark.slow
def test_ctrl_c_during_the_install_stops_cleanly_and_a_rerun_finishes(machine):
    env = {**machine.env, "GEOLIBRE_ML_UV": str(dev_uv())}
    lock = InstallLock(Paths.resolve(machine.ml_home).install_lock)
    lock.acquire()  # the app is installing: the script's install step waits its turn
    lines: list[str] = []
    proc = subprocess.Popen(
        ["bash", str(SH), "--no-weights", "--yes"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    reader = _follow(proc, lines)
    try:
        wait_until(
            lambda: any("Waiting for it to finish" in line for line in lines),
            timeout_s=120,
            what="the install step to start",
        )
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # stop it before freeing the lock, or it would start building
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        lock.release()
    reader.join(timeout=10)
    assert proc.stdout is not None
    proc.stdout.close()
    output = "".join(lines)
    assert proc.returncode == 130, output
    assert "The install was cancelled" in output
    assert "Interrupted. Nothing half-installed was marked ready." in output
    assert "Run this script again: it resumes where it stopped." in output
    assert not machine.status()["installed"]
    assert not list((machine.data / "cli").glob("tmp-*")), "scratch folders are removed"
    rerun = machine.run("--no-weights", "--yes", env={"GEOLIBRE_ML_UV": str(dev_uv())})
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert machine.status()["installed"]


@posix_only
@pytest.mark.slow
def test_an_empty_wheelhouse_fails_naming_the_missing_package(machine, tmp_path):
    empty = tmp_path / "empty wheelhouse"
    empty.mkdir()
    result = machine.run(
        "--no-weights", "--yes", env={"GEOLIBRE_ML_UV": str(dev_uv()), "UV_FIND_LINKS": str(empty)}
    )
    assert result.returncode == 1
    assert "The package torch is not available from the wheelhouse." in result.stderr
    assert "The model backend was not installed (geolibre-ml exit code 1)" in result.stderr
    assert "  Fix: Do what it says, then run this script again" in result.stderr
    assert not machine.status()["installed"]


@posix_only
@pytest.mark.slow
def test_hf_token_is_used_never_shown_and_missing_weights_exit_3(machine):
    secret = "hf_InstallerSecret0123456789abcdefXYZ"
    result = machine.run("--yes", env={"GEOLIBRE_ML_UV": str(dev_uv()), "HF_TOKEN": secret})
    assert result.returncode == 3, result.stdout + result.stderr  # env in place, weights not
    assert "the SAM 3 weights are not" in result.stderr
    assert "Could not reach the Hugging Face Hub" in result.stdout  # the closed test Hub
    assert result.stdout.splitlines()[-1].startswith("Verdict: FAILURE.")
    assert secret not in result.stdout + result.stderr
    stored = Paths.resolve(machine.ml_home).hf_home / "token"
    assert stored.read_text().strip() == secret, "the token went where huggingface_hub reads it"
    for path in machine.ml_home.rglob("*"):
        if path.is_file() and path != stored and not path.is_relative_to(machine.data / "cli"):
            assert secret.encode() not in path.read_bytes(), path
    for log in (machine.data / "cli").glob("*.log"):
        assert secret not in log.read_text(), log


@posix_only
def test_a_cold_cache_offline_stops_at_the_command_and_breaks_nothing(machine, tmp_path):
    cold = tmp_path / "cold cache"
    cold.mkdir()
    result = machine.run(
        "--no-weights", "--yes", env={"GEOLIBRE_ML_UV": str(dev_uv()), "XDG_CACHE_HOME": str(cold)}
    )
    assert result.returncode == 1
    assert "uv could not install the geolibre-ml command" in result.stderr
    assert "was not found in the cache" in result.stderr  # uv's words, naming the package
    assert "UV_FIND_LINKS" in result.stderr  # the fix
    assert not machine.cli.exists() and not machine.cli.is_symlink()
    assert not list((machine.data / "cli").glob("env-*/.geolibre-ml-complete"))


@posix_only
def test_a_bad_geolibre_ml_uv_is_named(machine, tmp_path):
    result = machine.run("--yes", env={"GEOLIBRE_ML_UV": str(tmp_path / "no-such-uv")})
    assert result.returncode == 1
    assert f"GEOLIBRE_ML_UV={tmp_path / 'no-such-uv'} is not a working uv" in result.stderr


@posix_only
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown option: --bogus"),
        (["--backend"], "--backend needs a value."),
        (["--backend", "cuda"], "--backend must be meta or transformers, not cuda."),
        (["--ask-token", "--token-file", "t"], "give the token one way only"),
        (["--ask-token", "--yes"], "--ask-token asks a question, --yes forbids them"),
    ],
)
def test_bad_options_exit_2_with_the_reason(args, message):
    result = subprocess.run(["bash", str(SH), *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr and "--help" in result.stderr
