"""The READMEs' commands, copied as written: each shell line in a fenced ``sh`` block is
either run here (a fresh home, loopback sources) or named with the test that covers it
and, where it is ours, parsed by the real command line. A new or changed command that
is in neither list fails, so the READMEs cannot drift from what works.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from geolibre_env.cli import build_parser

from tests.dev.person import ROOT, answering_sources, clone, person_env, sync_first

READMES = ("README.md", "installers/README.md", "tauri-bridge/README.md")
SHELL_LANGUAGES = {"sh", "bash", "shell", "console", "powershell", "ps1"}
FENCE = re.compile(r"^```(\S*)\s*$")
COMMENT = re.compile(r"\s+#\s.*$")
RUN_TIMEOUT_S = 120.0
CLI = "python3 dev.py geolibre-ml"

# Run here as written, with the exit code a person sees on a machine where nothing is
# installed yet (1 where the command's job is to say that something is missing).
RUN: dict[str, int] = {
    f"{CLI} --help": 0,
    f"{CLI} install --dry-run": 0,
    f"{CLI} status": 0,
    f"{CLI} verify": 1,
    f"{CLI} uninstall": 0,
    f"{CLI} doctor": 1,
    f"{CLI} doctor --json": 1,
    f"{CLI} doctor --bundle report.zip": 1,
    f"{CLI} install --from bundle.tar": 1,  # no such file here: one clear sentence
}

# Not run here, and why; their flags are still checked below where the command is ours.
ELSEWHERE: dict[str, str] = {
    "python3 dev.py sidecar": "tests/dev/test_dev_signals.py starts it and stops it by pid",
    "python3 dev.py test": "the suite itself (.ci/run)",
    f"{CLI} install --ask-token": "a real install (PyTorch, about 7 GB): tests/tier3",
    f"{CLI} repair": "installs what is missing: tests/env_manager/install/test_provision.py",
    f"{CLI} bundle export --output bundle.tar --os windows --arch x86_64 --python 3.12 "
    "--build cu126 --backend meta --ask-token": (
        "downloads: tests/env_manager/install/test_bundle.py"
    ),
    "bash installers/install-model-backend.sh": (
        "a real install: tests/installers/test_install_script.py"
    ),
    "powershell -ExecutionPolicy Bypass -File installers\\install-model-backend.ps1": (
        "Windows: tests/installers/test_script_parity.py holds it to the sh script"
    ),
    "cd tauri-bridge/client": "tests/bridge/test_ts_client.py works in that folder",
    "npm ci": "tests/bridge/test_ts_client.py",
    "npm run build": "tests/bridge/test_ts_client.py",
    "npm test": "tests/bridge/test_ts_client.py",
    "npm run demo": "tests/bridge/test_ts_client.py (the demo page in Chromium)",
    "cd tauri-bridge/app": "tests/bridge/test_tauri_app.py builds the app in that folder",
    "CARGO_TARGET_DIR=~/.cache/geolibre-ml-tests/tauri-target npm run build": (
        "tests/bridge/test_tauri_app.py (cargo, minutes cold)"
    ),
    "dpkg-deb -x ~/.cache/geolibre-ml-tests/tauri-target/debug/bundle/deb/*.deb /tmp/app": (
        "tests/bridge/test_tauri_app.py unpacks the .deb"
    ),
    "GEOLIBRE_ML_SAMGEO_URL=http://gpu-box:8000 /tmp/app/usr/bin/geolibre-ml-tauri-app": (
        "tests/bridge/test_tauri_app.py runs the app under Xvfb"
    ),
}


def shell_commands(text: str) -> Iterator[str]:
    """The command lines of the shell blocks: comments dropped, continuations joined."""
    language: str | None = None
    pending = ""
    for line in text.splitlines():
        fence = FENCE.match(line)
        if fence:
            language = None if language is not None else fence.group(1)
            continue
        if language not in SHELL_LANGUAGES:
            continue
        line = COMMENT.sub("", line).strip()
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        if pending + line:
            yield pending + line
        pending = ""


def readme_commands() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in READMES:
        for command in shell_commands((ROOT / name).read_text(encoding="utf-8")):
            found.setdefault(command, name)
    return found


COMMANDS = readme_commands()


def test_every_readme_command_is_run_or_accounted_for() -> None:
    unknown = [f"{where}: {cmd}" for cmd, where in COMMANDS.items()
               if cmd not in RUN and cmd not in ELSEWHERE]  # fmt: skip
    assert not unknown, "README commands no test runs or checks:\n" + "\n".join(unknown)
    stale = [cmd for cmd in (*RUN, *ELSEWHERE) if cmd not in COMMANDS]
    assert not stale, f"listed here but in no README any more: {stale}"


def test_the_readme_extracts_what_a_reader_sees() -> None:
    text = "```sh\nfoo --a \\\n    --b   # why\n```\n```json\n{}\n```\n```\nlayout\n```\n"
    assert list(shell_commands(text)) == ["foo --a --b"]


@pytest.fixture(scope="module")
def sources() -> Iterator[str]:
    with answering_sources() as url:
        yield url


@pytest.mark.parametrize("command", list(RUN))
def test_readme_command_runs_as_written(command: str, tmp_path: Path, sources: str) -> None:
    if command not in COMMANDS:
        pytest.fail(f"no README has {command!r} any more")
    workdir = clone(tmp_path / "clone")
    sync_first(workdir, tmp_path / "home")
    result = subprocess.run(
        ["bash", "-c", command],
        cwd=workdir,
        env=person_env(tmp_path / "home", sources),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    screen = result.stdout + result.stderr
    assert "Traceback" not in screen, screen
    assert result.returncode == RUN[command], screen
    assert screen.strip(), f"{command} printed nothing"
    if "--json" in command:
        assert json.loads(result.stdout)["verdict"] == "failure"
    if "--bundle" in command:
        assert (workdir / "report.zip").stat().st_size > 0
    if "--from" in command:
        assert "bundle.tar does not exist" in screen


@pytest.mark.parametrize(
    "command", [c for c in ELSEWHERE if c.startswith(f"{CLI} ")], ids=lambda c: c[:60]
)
def test_readme_command_is_accepted_by_the_command_line(command: str) -> None:
    argv = shlex.split(command)[3:]
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way of refusing a flag
        pytest.fail(f"geolibre-ml refuses {argv}: exit {exc.code}")


def test_readme_npm_scripts_exist() -> None:
    package = json.loads((ROOT / "tauri-bridge/client/package.json").read_text())
    for command in ELSEWHERE:
        if command.startswith("npm run "):
            assert command.split()[2] in package["scripts"], command
    assert "test" in package["scripts"]


def test_readme_installer_takes_its_options() -> None:
    result = subprocess.run(
        ["bash", "installers/install-model-backend.sh", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: install-model-backend.sh" in result.stdout
