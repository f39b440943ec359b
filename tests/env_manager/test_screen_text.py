"""Fitting report lines to a terminal's width: nothing lost, nothing over the width,
continuations under the text column."""

from __future__ import annotations

import pytest
from geolibre_env.screen_text import fit, fit_line

WIDTH = 40


@pytest.mark.parametrize(
    ("line", "continuation"),
    [
        ("  PyTorch:  torch 2.14.1 from the package index, runs on the CPU here", " " * 12),
        ("  - Python 3.11.7 is used: the spec allows 3.11 or 3.12, newest first", " " * 4),
        ("       -> Install it from the app, or run geolibre-ml install now", " " * 10),
        ("Verdict: FAILURE. Segmentation will not work: nothing is installed.", ""),
    ],
)
def test_a_long_line_wraps_under_its_text_column(line: str, continuation: str) -> None:
    lines = fit_line(line, WIDTH)
    assert len(lines) > 1
    assert all(len(part) <= WIDTH for part in lines), lines
    assert all(part.startswith(continuation) and part[len(continuation)] != " "
               for part in lines[1:]), lines  # fmt: skip
    assert " ".join(line.split()) == " ".join(" ".join(lines).split()), "no word lost"


def test_short_lines_colours_and_pipes_are_left_alone() -> None:
    text = "short\n\n\x1b[32mOK\x1b[0m   " + "word " * 7
    assert fit(text, WIDTH) == text  # 35 visible columns: the colour codes take none
    assert fit("x " * 50, None) == "x " * 50  # not a terminal: unchanged


def test_a_word_longer_than_the_line_keeps_a_line_of_its_own() -> None:
    path = "/home/someone/" + "a" * 60
    lines = fit_line(f"  Disk:  {path} has room", WIDTH)
    assert lines == ["  Disk:", f"         {path}", "         has room"]
