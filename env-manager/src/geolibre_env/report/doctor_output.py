"""How the doctor's report reaches people: a readable table (coloured on a
terminal), and a zip for bug reports with the report, recent logs and the
install journals, all redacted.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import TextIO

from geolibre_env.redact import redact
from geolibre_env.report.types import Report
from geolibre_env.screen_text import fit, terminal_width
from geolibre_env.settings import EnvSettings

_LABEL = {"ok": "OK", "warning": "WARN", "failure": "FAIL"}
_COLOUR = {"ok": "32", "warning": "33", "failure": "31"}
MAX_LOG_BYTES_IN_BUNDLE = 2 * 1024 * 1024
DEFAULT_WIDTH = 100  # piped output: wide lines are fine there


def format_report(report: Report, *, colour: bool = False, width: int = DEFAULT_WIDTH) -> str:
    def paint(status: str, text: str) -> str:
        return f"\033[{_COLOUR[status]}m{text}\033[0m" if colour else text

    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(report.created_at))
    lines = [f"GeoLibre ML doctor ({stamp}, {report.seconds:.1f} s)", ""]
    title_width = max(len(c.title) for c in report.checks) + 2
    indent = " " * (7 + title_width)
    for check in report.checks:
        label = paint(check.status, f"{_LABEL[check.status]:<5}")
        lines.append(f"  {label}{check.title:<{title_width}}{_wrap(check.detail, width, indent)}")
        if check.fix:
            lines.append(f"{indent}-> {_wrap(check.fix, width, indent + '   ')}")
    verdict = paint(report.verdict, report.verdict.upper())
    lines += ["", f"Verdict: {verdict}. {report.summary}"]
    return redact("\n".join(lines))


def _wrap(text: str, width: int, indent: str) -> str:
    words, lines, line = text.split(), [], ""
    room = max(30, width - len(indent))
    for word in words:
        if line and len(line) + 1 + len(word) > room:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return f"\n{indent}".join(lines)


def print_report(report: Report, stream: TextIO) -> None:
    """The table for a person: coloured and fitted to the width on a terminal."""
    width = terminal_width(stream)
    text = format_report(report, colour=width is not None, width=width or DEFAULT_WIDTH)
    stream.write(fit(text, width) + "\n")


def _tail_bytes(path: Path) -> bytes:
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - MAX_LOG_BYTES_IN_BUNDLE))
        return handle.read()


def bundle_bytes(settings: EnvSettings, report: Report) -> bytes:
    """A zip with the report, the recent logs and the install journals, redacted."""
    paths = settings.paths
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("report.json", json.dumps(report.to_dict(), indent=2, default=str))
        archive.writestr("report.txt", format_report(report))
        if paths.logs.is_dir():
            for log in sorted(paths.logs.glob("*.log*")):
                text = _tail_bytes(log).decode("utf-8", "replace")
                archive.writestr(f"logs/{log.name}", redact(text))
        if paths.envs_dir.is_dir():
            for name in ("journal.json", "complete.json"):
                for found in sorted(paths.envs_dir.glob(f"*/{name}")):
                    text = found.read_text(encoding="utf-8", errors="replace")
                    archive.writestr(f"install/{found.parent.name}/{name}", redact(text))
        for state in (paths.backend_state, paths.supervisor_status, paths.active_pointer):
            if state.is_file():
                archive.writestr(f"state/{state.name}", redact(state.read_text(errors="replace")))
    return buffer.getvalue()


def write_bundle(settings: EnvSettings, report: Report, dest: Path | None = None) -> Path:
    if dest is None or dest.is_dir():
        name = time.strftime("geolibre-ml-report-%Y%m%d-%H%M%S.zip")
        dest = (dest or Path.cwd()) / name
    dest.write_bytes(bundle_bytes(settings, report))
    return dest
