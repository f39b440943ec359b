"""The PowerShell installer held to the shell one without PowerShell: the same
flags, help, messages (variables aside) and embedded doctor summary; and, where
``pwsh`` exists, PowerShell's own parser and help output."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SH = ROOT / "installers" / "install-model-backend.sh"
PS1 = ROOT / "installers" / "install-model-backend.ps1"


def _region(text: str, begin: str, end: str) -> str:
    return text[text.index(begin) : text.index(end)]


def sh_flags() -> set[str]:
    arms = re.findall(
        r"^\s*(-[^)\n]*)\)", _region(SH.read_text(), "# flags:begin", "# flags:end"), re.M
    )
    return {flag.strip().removesuffix("=*") for arm in arms for flag in arm.split("|")}


def ps1_flags() -> set[str]:
    region = _region(PS1.read_text(), "# flags:begin", "# flags:end")
    return {flag.rstrip("=") for flag in re.findall(r"'(--?[a-z][a-z-]*=?)'", region)}


def help_text(path: Path) -> str:
    text = path.read_text()
    body = re.search(r"<<'USAGE'\n(.*?)\nUSAGE\n|@'\n(Usage:.*?)\n'@", text, re.S)
    assert body is not None
    return (body.group(1) or body.group(2)).replace(path.name, "SCRIPT")


def help_flags(text: str) -> set[str]:
    pairs = re.findall(r"^  (?:(-[a-z]), )?(--[a-z-]+)", text, re.M)
    return {flag for pair in pairs for flag in pair if flag}


CALL = re.compile(
    r"(?:^|[\s|{;)])(?:say|info|warn|fail|step|usage_error)\s+(?:\d+\s+)?(\".*)$", re.I
)


def messages(path: Path) -> set[str]:
    """Every literal the script shows through say/info/warn/fail/step/usage_error,
    with variables as {} (``$x``, ``$1``, ``${x}``, ``$(...)``, ``$env:X``, ``{}/sub/path``)."""
    text = re.sub(r"(\\|`)\n\s*", " ", path.read_text())  # join continued lines
    found = set()
    for line in text.splitlines():
        match = CALL.search(line)
        for literal in re.findall(r'"([^"]*)"', match.group(1)) if match else []:
            literal = re.sub(r"\$\((?:[^()]|\([^()]*\))*\)", "{}", literal)
            literal = re.sub(r"\$\{[^}]*\}", "{}", literal)
            literal = re.sub(r"\$(?:\d|[A-Za-z_]\w*(?::\w+)?)", "{}", literal)
            found.add(re.sub(r"\{\}(?:[/\\][\w.-]+)+", "{}", literal))
    return found


def doctor_summary(path: Path) -> str:
    region = _region(
        path.read_text(), "# doctor summary (python) begin", "# doctor summary (python) end"
    )
    body = re.search(r"<<'PY'\n(.*?\n)PY\n|@'\n(.*?\n)'@\n", region, re.S)
    assert body is not None
    return (body.group(1) or body.group(2)).replace("\r\n", "\n")


def test_both_scripts_take_the_same_flags_and_document_them():
    flags = sh_flags()
    assert {"--backend", "--token-file", "--ask-token", "--no-weights", "--yes", "--help"} <= flags
    assert ps1_flags() == flags
    assert help_flags(help_text(SH)) == flags
    assert help_flags(help_text(PS1)) == flags


def test_both_scripts_show_the_same_help():
    assert help_text(PS1) == help_text(SH)


def test_both_scripts_say_the_same_things():
    sh, ps1 = messages(SH), messages(PS1)
    assert len(sh) >= 30, sorted(sh)  # the extraction found the messages at all
    assert sh - ps1 == set(), "only in the .sh"
    assert ps1 - sh == set(), "only in the .ps1"


def test_both_scripts_summarise_the_doctor_with_the_same_code():
    code = doctor_summary(SH)
    assert "Verdict: " in code
    assert doctor_summary(PS1) == code
    compile(code, "doctor_summary.py", "exec")


def test_the_powershell_script_is_ascii():
    # Windows PowerShell 5.1 reads a file without a BOM in the ANSI code page.
    PS1.read_bytes().decode("ascii")


def test_the_doctor_summary_falls_back_to_status_without_a_doctor(tmp_path):
    """A geolibre-ml from before the doctor (argparse rejects the subcommand)."""
    older = tmp_path / "geolibre-ml"
    older.write_text(
        f"#!{sys.executable}\nimport argparse\n"
        "parser = argparse.ArgumentParser(prog='geolibre-ml')\n"
        "sub = parser.add_subparsers(dest='command', required=True)\n"
        "sub.add_parser('install')\n"
        "sub.add_parser('status').add_argument('--json', action='store_true')\n"
        "args = parser.parse_args()\nprint('Model environment: env-old (torch 2.14.1)')\n"
    )
    older.chmod(0o755)
    summary = tmp_path / "doctor_summary.py"
    summary.write_text(doctor_summary(SH))
    proc = subprocess.run(
        [sys.executable, str(summary), str(older), "0"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-2] == "Model environment: env-old (torch 2.14.1)"
    assert lines[-1].startswith("Verdict: UNKNOWN. This geolibre-ml has no doctor command")


PWSH_MISSING = (
    "pwsh is not installed (Debian's repositories have no powershell package, and "
    "PyPI and npm carry no pwsh); the parity tests above check the .ps1 without it"
)


@pytest.mark.skipif(shutil.which("pwsh") is None, reason=PWSH_MISSING)
def test_powershell_parses_the_script_and_prints_the_same_help():
    check = (
        "$errors = $null; "
        f"[void][System.Management.Automation.Language.Parser]::ParseFile('{PS1}', [ref]$null, "
        "[ref]$errors); if ($errors.Count) { $errors | ForEach-Object { $_.ToString() }; exit 1 }"
    )
    parsed = subprocess.run(
        ["pwsh", "-NoProfile", "-NonInteractive", "-Command", check],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr
    shown = subprocess.run(
        ["pwsh", "-NoProfile", "-NonInteractive", "-File", str(PS1), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.replace(PS1.name, "SCRIPT").strip() == help_text(SH).strip()
