"""What a person sees on an 80-column terminal when running the README's commands:
no traceback, no markup, nothing cut by the terminal, no doubled punctuation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dev.person import answering_sources, clone, person_env, sync_first
from tests.harness.terminal import OTHER_ESCAPES, Screen, run_on_terminal

COLUMNS = 80
# (command as the README writes it, the exit code with nothing installed)
SCREENS = {
    "install --dry-run": ("python3 dev.py geolibre-ml install --dry-run", 0),
    "doctor": ("python3 dev.py geolibre-ml doctor", 1),
    "status": ("python3 dev.py geolibre-ml status", 0),
}
MARKUP = re.compile(r"``|:(?:ref|class|func|mod):`|^\.\. \w+::", re.M)
# ".," "," "., " ";." ". ." and a lone ".." (not "..." nor "../"); "e.g.," is English.
DOUBLE_PUNCTUATION = re.compile(r"[.;:,][,;]|[,;]\.|\.\s+\.|(?<![.\w/])\.\.(?![./\w])")
ABBREVIATIONS = re.compile(r"\b(?:e\.g|i\.e|etc)\.,")


@pytest.fixture(scope="module")
def sources() -> Iterator[str]:
    with answering_sources() as url:
        yield url


def cut_lines(screen: Screen) -> list[str]:
    """Lines the terminal had to break (wider than the screen) although they have a
    space to wrap at: the program should have wrapped them."""
    return [line for line in screen.lines if len(line) > screen.columns and " " in line.strip()]


def problems(screen: Screen) -> list[str]:
    found = []
    text = "\n".join(screen.lines)
    if "Traceback" in text:
        found.append("a traceback")
    found += [f"markup {m.group(0)!r}" for m in MARKUP.finditer(text)]
    found += [f"escape {m.group(0)!r}" for m in OTHER_ESCAPES.finditer(text)]
    plain = ABBREVIATIONS.sub("", text)
    for match in DOUBLE_PUNCTUATION.finditer(plain):
        around = plain[max(0, match.start() - 30) : match.end() + 10]
        found.append(f"double punctuation {match.group(0)!r} in {around!r}")
    found += [f"cut by the terminal: {line!r}" for line in cut_lines(screen)]
    return found


@pytest.mark.parametrize("name", list(SCREENS))
def test_the_screen_reads_cleanly_at_80_columns(name: str, tmp_path: Path, sources: str) -> None:
    command, exit_code = SCREENS[name]
    workdir, home = clone(tmp_path / "clone"), tmp_path / "home"
    sync_first(workdir, home)
    screen = run_on_terminal(
        ["bash", "-c", command], env=person_env(home, sources), cwd=workdir, columns=COLUMNS
    )
    assert screen.returncode == exit_code, screen.text
    assert len(screen.lines) >= 2, screen.text
    assert not problems(screen), "\n".join(problems(screen)) + "\n\n" + screen.text


def test_the_checks_catch_what_they_look_for() -> None:
    lines = [
        "Traceback (most recent call last):",
        "  Use ``geolibre-ml install``.",
        "samgeo-api was stopped., 24 s ago",
        "x" * 30 + " " + "y" * 60,
        "/a/very/long/path/" + "z" * 90,  # one word: nothing to wrap at, left whole
        "see e.g., the README; then ... wait, ../up is fine.",
    ]
    screen = Screen(0, lines, [], COLUMNS, "")
    found = problems(screen)
    assert found[0] == "a traceback"
    assert any("``" in f for f in found)
    assert any("'.,'" in f for f in found)
    assert [f for f in found if f.startswith("cut")] == [f"cut by the terminal: {lines[3]!r}"]
    assert len(found) == 5, found  # the markup twice
