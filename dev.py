#!/usr/bin/env python3
"""Development entry point that needs only Python 3.11+ and pip.

    python3 dev.py sidecar [launcher flags]   start the sidecar in development mode
    python3 dev.py geolibre-ml [args]         the env manager's CLI (install, status, doctor, ...)
    python3 dev.py test [pytest args]         run the whole default test suite
    python3 dev.py bench [--quick]            run the benchmarks and print the figures

It finds uv (on PATH, or bootstraps it into .dev/ with pip, no administrator
rights), syncs the locked environment with the machine's own Python (never
downloading one), and runs the command in it. On Linux and macOS the command
takes dev.py's place (same pid), so a signal sent to dev.py reaches it and
dev.py's exit status is the command's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BOOTSTRAP = ROOT / ".dev" / "bootstrap"
UV_REQUIREMENT = "uv>=0.9,<0.14"
MIN_UV = (0, 9, 0)
COMMANDS = ("sidecar", "geolibre-ml", "test", "bench")
# pytest plugin: "no tests ran" (exit 5) is a failure when the whole suite is asked for.
EMPTY_RUN_FAILS = "tests.harness.empty_run_fails"


def say(message: str) -> None:
    print(f"dev.py: {message}", file=sys.stderr, flush=True)


def uv_version(path: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"uv (\d+)\.(\d+)\.(\d+)", out.stdout)
    return tuple(int(x) for x in match.groups()) if match else None


def find_or_bootstrap_uv() -> str:
    scripts = BOOTSTRAP / ("Scripts" if os.name == "nt" else "bin")
    candidates = [shutil.which("uv"), str(scripts / ("uv.exe" if os.name == "nt" else "uv"))]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            version = uv_version(candidate)
            if version and version >= MIN_UV:
                return candidate
    say(f"bootstrapping uv into {BOOTSTRAP} with pip (one time)")
    venv.EnvBuilder(with_pip=True, clear=True).create(BOOTSTRAP)
    python = scripts / ("python.exe" if os.name == "nt" else "python")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         UV_REQUIREMENT],
        check=True,
    )  # fmt: skip
    return str(scripts / ("uv.exe" if os.name == "nt" else "uv"))


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")  # use this machine's Python
    env.setdefault("UV_PYTHON", sys.executable)
    # Our own project environment, whatever an outer `uv run` may have set.
    env.pop("UV_PROJECT_ENVIRONMENT", None)
    env.pop("VIRTUAL_ENV", None)
    return env


def ensure_chromium() -> None:
    """The demo page's browser test needs Debian's chromium; install it where we can."""
    if shutil.which("chromium") or not shutil.which("apt-get"):
        return
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        say("chromium is missing and installing it needs root; its test will be skipped")
        return
    say("installing chromium for the demo page's browser test (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env).returncode:
        subprocess.run(["apt-get", "update", "-q"], env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env)


# What building the Tauri app (tauri-bridge/app), showing its window and driving it
# through WebDriver (webkit2gtk-driver: WebKitWebDriver, under tauri-driver) need on Debian.
TAURI_DEBS = (
    "libwebkit2gtk-4.1-dev",
    "build-essential",
    "libxdo-dev",
    "librsvg2-dev",
    "xvfb",
    "webkit2gtk-driver",
)


def missing_debs(names: tuple[str, ...]) -> list[str]:
    def installed(name: str) -> bool:
        query = ["dpkg-query", "-W", "-f", "${Status}", name]
        out = subprocess.run(query, capture_output=True, text=True).stdout
        return out.endswith(" installed")

    return [name for name in names if not installed(name)]


def ensure_tauri_deps() -> None:
    """The Tauri app's end-to-end tests need WebKitGTK's headers, Xvfb and WebKitWebDriver;
    install them where we can (only with Rust present: without cargo those tests are skipped)."""
    if not shutil.which("cargo") or not shutil.which("apt-get") or not shutil.which("dpkg-query"):
        return
    missing = missing_debs(TAURI_DEBS)
    if not missing:
        return
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        say(f"{' '.join(missing)} missing and installing needs root; the Tauri app test will skip")
        return
    say(f"installing {' '.join(missing)} for the Tauri app's end-to-end tests (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env).returncode:
        subprocess.run(["apt-get", "update", "-q"], env=env)
        subprocess.run(install, env=env)


def replace_with(argv: list[str], env: dict[str, str], *, in_root: bool) -> int:
    """Run ``argv`` in dev.py's place (POSIX exec; ``uv run`` forwards SIGINT and SIGTERM
    to its child, measured with uv 0.13), so whoever signals our pid reaches the command.
    ``in_root``: run it from the repository; otherwise from the caller's folder, so
    relative paths on its command line mean what the person typing them meant."""
    cwd = ROOT if in_root else Path.cwd()
    if os.name == "posix":
        os.chdir(cwd)
        os.execve(argv[0], argv, env)
    # Windows has no exec: Ctrl-C reaches the whole console group, the child included.
    return subprocess.call(argv, cwd=cwd, env=env)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    uv = find_or_bootstrap_uv()
    env = environment()
    subprocess.run([uv, "sync", "--frozen", "--quiet"], cwd=ROOT, env=env, check=True)
    run = [uv, "run", "--frozen", "--no-sync", "--project", str(ROOT)]
    if command == "sidecar":
        return replace_with([*run, "geolibre-sidecar", "--dev", *rest], env, in_root=False)
    if command == "geolibre-ml":
        return replace_with([*run, "geolibre-ml", *rest], env, in_root=False)
    if command == "bench":
        return replace_with([*run, "python", "-m", "tests.benchmarks", *rest], env, in_root=True)
    ensure_chromium()
    ensure_tauri_deps()
    pytest = [*run, "python", "-m", "pytest", "-p", EMPTY_RUN_FAILS, *rest]
    return replace_with(pytest, env, in_root=True)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as exc:
        say(f"{' '.join(map(str, exc.cmd))} failed with exit code {exc.returncode}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
