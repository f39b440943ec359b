"""A progress bar in the terminal for :class:`ProgressEvent` streams.

On a terminal: one line redrawn in place (with colour when the terminal
supports it). Elsewhere (logs, CI): a plain line per phase change and at most
one per few seconds within a phase.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from typing import TextIO

from geolibre_env.progress import ProgressEvent

BAR_WIDTH = 24
PLAIN_EVERY_S = 5.0


def supports_colour(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


class TerminalProgress:
    """A :data:`ProgressSink` that draws to ``stream`` (stderr by default); thread-safe."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.colour = supports_colour(self.stream)
        self._lock = threading.Lock()
        self._phase: str | None = None
        self._last_plain = 0.0
        self._drawn = False

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if self.tty:
                self._draw(event)
            else:
                self._plain(event)

    def _bar(self, event: ProgressEvent) -> str:
        fraction = event.fraction
        if fraction is None:
            return ""
        filled = round(fraction * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        amount = (
            f" {event.done / 1e6:,.0f}/{event.total / 1e6:,.0f} MB"
            if event.unit == "bytes" and event.total
            else f" {event.done}/{event.total}"
            if event.total
            else ""
        )
        return f"[{bar}] {fraction * 100:3.0f}%{amount} "

    def _draw(self, event: ProgressEvent) -> None:
        width = shutil.get_terminal_size((100, 20)).columns
        phase = f"{event.phase:>9}"
        if self.colour:
            colour = {"warning": "33", "error": "31"}.get(event.level, "36")
            phase = f"\033[{colour}m{phase}\033[0m"
        text = f"{self._bar(event)}{event.message}"
        visible = 10 + len(text)
        if visible > width:
            text = text[: max(0, width - 11)]
        if event.phase != self._phase and self._drawn:
            self.stream.write("\n")  # keep each finished phase on screen
        self.stream.write(f"\r\033[K{phase} {text}")
        if event.phase == "done" or event.level != "info":
            self.stream.write("\n")
            self._drawn = False
        else:
            self._drawn = True
        self._phase = event.phase
        self.stream.flush()

    def _plain(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        changed = event.phase != self._phase
        if changed or event.level != "info" or now - self._last_plain >= PLAIN_EVERY_S:
            self.stream.write(f"{event.phase}: {self._bar(event)}{event.message}\n")
            self.stream.flush()
            self._last_plain = now
        self._phase = event.phase

    def finish(self) -> None:
        with self._lock:
            if self.tty and self._drawn:
                self.stream.write("\n")
                self.stream.flush()
            self._drawn = False
