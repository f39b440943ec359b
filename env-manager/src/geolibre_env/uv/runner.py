"""Finding uv, checking its version, and running it with a clean environment.

uv is looked for as a bundled copy first (``GEOLIBRE_ML_UV``, the ``UV`` that
``uv run`` exports, the ``uv`` wheel installed beside us), then on ``PATH``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from geolibre_env.errors import InstallCancelledError, ToolError
from geolibre_env.net.trust import uv_tls_environment
from geolibre_env.process_tree import ask_for_parent_death_signal, kill_tree
from geolibre_env.progress import CancelToken
from geolibre_env.redact import redact
from geolibre_env.settings import EnvSettings

MIN_UV_VERSION = (0, 9, 0)  # `uv venv --clear`, `--torch-backend`
VERSION_TIMEOUT_S = 10.0
TAIL_LINES = 30

# uv's own settings that an install must honour (mirrors, wheelhouses, offline
# use, certificates); proxies come from the settings (environment, else the OS);
# everything else about our environment is left out.
UV_PASSTHROUGH_PREFIXES = ("UV_",)
PASSTHROUGH_NAMES = (
    "SSL_CERT_FILE", "SSL_CERT_DIR",
    "PATH", "HOME", "USERPROFILE", "APPDATA", "LOCALAPPDATA", "SYSTEMROOT", "SYSTEMDRIVE",
    "TEMP", "TMP", "TMPDIR", "LANG", "LC_ALL", "XDG_CACHE_HOME", "XDG_DATA_HOME",
)  # fmt: skip
# Never handed to uv even though they start with UV_: they would redirect
# uv's project discovery away from the model environment.
UV_BLOCKED = ("UV_PROJECT_ENVIRONMENT", "UV_PROJECT", "UV_RUN_RECURSION_DEPTH")


@dataclass(frozen=True)
class UvTool:
    """A located, version-checked uv binary."""

    path: str
    version: tuple[int, ...]

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    def command(self, *args: str) -> list[str]:
        return [self.path, *args]

    def run(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        timeout_s: float,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run uv to completion; a failure raises :class:`ToolError` with the tail."""
        argv = self.command(*args)
        try:
            proc = subprocess.run(
                argv,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired as exc:
            raise ToolError(
                f"uv did not finish within {timeout_s:.0f} s.",
                command=argv,
                output_tail=tail_of(_text(exc.stderr)),
            ) from None
        if proc.returncode != 0:
            raise ToolError(
                f"uv failed (exit code {proc.returncode}).",
                command=argv,
                returncode=proc.returncode,
                output_tail=tail_of(proc.stderr),
            )
        return proc


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""


def tail_of(text: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of ``text``, redacted."""
    return redact("\n".join(text.rstrip().splitlines()[-lines:]))


def uv_environment(
    settings: EnvSettings, *, uv: UvTool | None = None, network: bool = True, **extra: str
) -> dict[str, str]:
    """The environment uv runs with: uv's settings, proxies, the OS trust store (plus
    GEOLIBRE_ML_CA_BUNDLE) and basics; never our secrets, never "skip TLS checks".

    ``network=False`` is for commands that download nothing (``uv python list``):
    they must work even with a broken CA bundle setting.
    """
    env = {
        key: value
        for key, value in settings.environ.items()
        if (key.startswith(UV_PASSTHROUGH_PREFIXES) and key not in UV_BLOCKED)
        or key in PASSTHROUGH_NAMES
    }
    env.update(settings.proxies.child_environment())
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    env.setdefault("UV_CACHE_DIR", str(settings.paths.uv_cache))
    env["UV_NO_PROGRESS"] = "1"
    uv_tls_environment(
        env,
        paths=settings.paths,
        ca_bundle=settings.ca_bundle if network else None,
        environ=settings.environ,
        uv_version=uv.version if uv is not None else None,
    )
    env.update(extra)
    return env


def candidate_paths(settings: EnvSettings) -> list[str]:
    """Where uv may be, most trusted first."""
    candidates: list[str] = []
    if settings.uv_path:
        candidates.append(settings.uv_path)
    try:
        from uv import find_uv_bin  # the uv wheel installed beside us

        candidates.append(find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    exe = "uv.exe" if sys.platform == "win32" else "uv"
    sibling = Path(sys.executable).with_name(exe)
    if sibling.exists():
        candidates.append(str(sibling))
    on_path = shutil.which("uv")
    if on_path:
        candidates.append(on_path)
    seen: set[str] = set()
    return [c for c in candidates if not (c in seen or seen.add(c))]


def _minimal_env(settings: EnvSettings) -> dict[str, str]:
    basics = ("PATH", "SYSTEMROOT", "HOME", "USERPROFILE")
    env = {key: settings.environ[key] for key in basics if key in settings.environ}
    env.setdefault("PATH", os.defpath)
    return env


def find_uv(settings: EnvSettings) -> UvTool:
    """The first working uv at least :data:`MIN_UV_VERSION`, else a :class:`ToolError`."""
    problems: list[str] = []
    for path in candidate_paths(settings):
        try:
            out = subprocess.run(
                [path, "--version"],
                capture_output=True,
                text=True,
                timeout=VERSION_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
                env=_minimal_env(settings),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"{path}: {exc.__class__.__name__}")
            continue
        match = re.search(r"uv (\d+)\.(\d+)\.(\d+)", out.stdout)
        if out.returncode != 0 or not match:
            problems.append(f"{path}: not a working uv")
            continue
        version = tuple(int(part) for part in match.groups())
        if version < MIN_UV_VERSION:
            problems.append(f"{path}: uv {'.'.join(match.groups())} is too old")
            continue
        return UvTool(path=path, version=version)
    raise ToolError(
        "uv was not found" + (f" ({'; '.join(problems)})" if problems else "") + ".",
        hint="Reinstall geolibre-ml (it bundles uv), or install uv and put it on PATH.",
    )


def installed_pythons(uv: UvTool, settings: EnvSettings) -> list[tuple[str, str]]:
    """``(version, path)`` of every Python uv can find here, without downloading any."""
    proc = uv.run(
        ["python", "list", "--only-installed", "--output-format", "json"],
        env=uv_environment(settings, uv=uv, network=False),
        timeout_s=30,
    )
    found: list[tuple[str, str]] = []
    for entry in json.loads(proc.stdout or "[]"):
        path = entry.get("path")
        version = entry.get("version")
        if path and version and entry.get("implementation", "cpython") == "cpython":
            found.append((version, path))
    return found


def stream_uv(
    uv: UvTool,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    on_line: Callable[[str], None],
    on_tick: Callable[[], None] | None = None,
    cancel: CancelToken | None = None,
    timeout_s: float | None = None,
) -> int:
    """Run uv, handing each stderr/stdout line to ``on_line``; cancel kills uv's tree.

    uv dies with us (Linux: parent-death signal), so a killed installer never
    leaves a uv writing into an environment the next run wants to resume.
    """
    argv = uv.command(*args)
    returncode, tail, timed_out = stream_lines(
        argv, env=env, on_line=on_line, on_tick=on_tick, cancel=cancel, timeout_s=timeout_s
    )
    if timed_out and returncode != 0:
        raise ToolError(
            f"uv did not finish within {timeout_s:.0f} s.",
            command=argv,
            returncode=returncode,
            output_tail=redact("\n".join(tail)),
        )
    if returncode != 0:
        raise ToolError(
            f"uv failed (exit code {returncode}).",
            command=argv,
            returncode=returncode,
            output_tail=redact("\n".join(tail)),
        )
    return returncode


def stream_lines(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    on_line: Callable[[str], None],
    on_tick: Callable[[], None] | None = None,
    cancel: CancelToken | None = None,
    timeout_s: float | None = None,
    stdin_text: str | None = None,
) -> tuple[int, list[str], bool]:
    """Run ``argv`` (dying with us on Linux), each output line to ``on_line``; cancel or
    the deadline kills its tree. ``(returncode, last lines, timed out)``; a cancel
    raises :class:`InstallCancelledError` once the tree is gone."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    kwargs: dict[str, object] = {}
    if sys.platform.startswith("linux"):
        kwargs["preexec_fn"] = ask_for_parent_death_signal
    elif sys.platform == "win32":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    proc = subprocess.Popen(
        list(argv),
        env=dict(env),
        stdin=subprocess.DEVNULL if stdin_text is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
        **kwargs,  # type: ignore[arg-type]
    )
    if stdin_text is not None and proc.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(stdin_text)
        proc.stdin.close()
    deadline = time.monotonic() + timeout_s if timeout_s else None
    stop = threading.Event()

    def guard() -> None:
        while not stop.wait(0.1):
            if (cancel and cancel.cancelled) or (deadline and time.monotonic() > deadline):
                kill_tree(proc.pid)
                return
            if on_tick is not None:
                on_tick()

    watcher = threading.Thread(target=guard, name="stream-guard", daemon=True)
    watcher.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            on_line(line)
        returncode = proc.wait()
    finally:
        stop.set()
        if proc.poll() is None:
            kill_tree(proc.pid)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()  # or the pipe stays open until garbage collection
    if cancel and cancel.cancelled:
        raise InstallCancelledError("The install was cancelled.", hint=CANCEL_HINT)
    timed_out = bool(deadline and time.monotonic() > deadline)
    return returncode, list(tail), timed_out


CANCEL_HINT = "Nothing that worked before was changed; run the install again to resume."
