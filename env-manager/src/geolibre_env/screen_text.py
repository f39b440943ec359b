"""Text for a terminal: lines that fit its width, wrapped at spaces under their own
column (``Label:  text`` continues under ``text``, ``- item`` under ``item``).

A terminal cuts a long line wherever the width ends, often mid-word; the CLI's
reports (plan, doctor, status, errors) go through :func:`fit` when stdout is a
terminal. Piped output is left alone (one line per fact is easier to grep).
"""

from __future__ import annotations

import re
import shutil
from typing import TextIO

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Where a line's text column starts: after "Label:  " style gaps of 2+ spaces within
# the first columns, or after a bullet ("- ", "* ", "-> ").
_GAP = re.compile(r"^\s*\S.*\s{2,}(?=\S)")
_BULLET = re.compile(r"^\s*(?:[-*]|->)\s+")
GAP_SEARCH_COLUMNS = 40
MIN_ROOM = 20  # narrower than this, a hanging indent costs more than it helps


def terminal_width(stream: TextIO) -> int | None:
    """The columns of the terminal ``stream`` writes to; None when it is not one."""
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    return shutil.get_terminal_size().columns


def visible_len(text: str) -> int:
    return len(_ANSI.sub("", text))


def hanging_indent(line: str) -> int:
    """The column where a wrapped continuation of ``line`` should start."""
    plain = _ANSI.sub("", line)
    gap = _GAP.match(plain[:GAP_SEARCH_COLUMNS])
    if gap:
        return gap.end()
    bullet = _BULLET.match(plain)
    if bullet:
        return bullet.end()
    return len(plain) - len(plain.lstrip(" "))


def fit_line(line: str, width: int) -> list[str]:
    """``line`` as lines of at most ``width`` visible columns, broken at spaces; a word
    longer than the room (a long path) keeps a line of its own."""
    if visible_len(line) <= width:
        return [line]
    indent = hanging_indent(line)
    if width - indent < MIN_ROOM:
        indent = 0
    head_len = len(line) - len(line.lstrip(" "))
    words = line[head_len:].split(" ")
    out: list[str] = []
    current, used = " " * head_len, head_len
    has_word = False
    for word in words:
        if not word:
            if has_word:
                current, used = current + " ", used + 1  # keep inner column gaps
            continue
        size = visible_len(word)
        if has_word and used + size > width:
            out.append(current.rstrip())
            current, used = " " * indent, indent
            has_word = False
        current, used = current + word, used + size
        has_word = True
        current, used = current + " ", used + 1
    out.append(current.rstrip())
    return out


def fit(text: str, width: int | None) -> str:
    """Every line of ``text`` within ``width`` columns (None: unchanged)."""
    if width is None:
        return text
    return "\n".join(part for line in text.split("\n") for part in fit_line(line, width))
