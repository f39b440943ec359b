"""Install progress bytes are what uv downloaded: real uv, a real loopback index, and
another program writing to the same disk meanwhile (which must not count)."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from geolibre_env.errors import ToolError
from geolibre_env.progress import ProgressEvent
from geolibre_env.settings import EnvSettings
from geolibre_env.uv.progress import UvProgress
from geolibre_env.uv.runner import find_uv, stream_uv, uv_environment

from tests.env_manager.package_index import PackageIndex
from tests.standin.wheelhouse import WheelSpec, build_wheel

PAYLOAD_CHARS = 6_000_000  # the wheel's one big file, unpacked (hex text: 1 byte a char)
OTHER_PROGRAM_BYTES = 40_000_000
METADATA_MARGIN_BYTES = 1_000_000  # dist-info, RECORD, index pages
UV_TIMEOUT_S = 120.0


def other_program_writes(folder: Path) -> None:
    """40 MB reach the disk that holds uv's cache, from someone else."""
    path = folder / "other-program.bin"
    with path.open("wb") as out:
        for _ in range(OTHER_PROGRAM_BYTES // 1_000_000):
            out.write(os.urandom(1_000_000))
        out.flush()
        os.fsync(out.fileno())


def run_install(
    tmp_path: Path, index_url: str, events: list[ProgressEvent]
) -> tuple[UvProgress, ToolError | None]:
    """``uv pip install bulky`` as the install's packages step runs it (tracker included)."""
    settings = EnvSettings.from_environ({"GEOLIBRE_ML_HOME": str(tmp_path / "home")})
    uv = find_uv(settings)
    cache = tmp_path / "uv-cache"
    env = uv_environment(settings, uv=uv, UV_CACHE_DIR=str(cache), UV_INDEX_URL=index_url)
    target = tmp_path / "venv"
    uv.run(["venv", str(target), "--python", sys.executable], env=env, timeout_s=60)
    tracker = UvProgress("packages", events.append, cache_dir=cache)
    other_program_writes(tmp_path)  # during the install, as far as the tracker can tell
    try:
        stream_uv(
            uv,
            ["pip", "install", "-v", "--python", str(target), "bulky"],
            env=env,
            on_line=tracker.line,
            on_tick=tracker.tick,
            timeout_s=UV_TIMEOUT_S,
        )
    except ToolError as exc:
        return tracker, exc
    return tracker, None


def reported(events: list[ProgressEvent]) -> list[int]:
    return [e.extra["bytes_downloaded"] for e in events if "bytes_downloaded" in e.extra]


def test_bytes_are_the_download_not_the_drop_in_free_space(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    payload = secrets.token_hex(PAYLOAD_CHARS // 2)  # random: no two runs share a cache entry
    files = {"bulky/__init__.py": "", "bulky/data.txt": payload}
    build_wheel(wheels, WheelSpec("bulky", "1.0", files))
    events: list[ProgressEvent] = []
    with PackageIndex(wheels) as index:
        tracker, failed = run_install(tmp_path, index.url, events)
    assert failed is None, failed
    assert any(r.path.endswith(".whl") for r in index.log()), "uv downloaded the wheel"
    downloaded = tracker.bytes_downloaded()
    assert downloaded is not None
    assert PAYLOAD_CHARS <= downloaded < PAYLOAD_CHARS + METADATA_MARGIN_BYTES, downloaded
    figures = reported(events)
    assert figures and max(figures) < PAYLOAD_CHARS + METADATA_MARGIN_BYTES, figures
    assert figures[-1] >= PAYLOAD_CHARS, "the last event has the whole download"
    for event in events:
        assert "written" not in event.message, event.message


def test_a_download_that_fails_on_dns_counts_nothing(tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    tracker, failed = run_install(
        tmp_path, "http://geolibre-ml-no-such-host.invalid/simple", events
    )
    assert failed is not None and "dns" in failed.output_tail.lower(), failed
    assert tracker.bytes_downloaded() == 0
    assert all(figure == 0 for figure in reported(events)), reported(events)
    assert not [e.message for e in events if "MB" in e.message]
