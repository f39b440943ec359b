"""The CLI's plumbing: logging, the token, signals, the parent watch and progress output.

Kept apart from the commands (:mod:`geolibre_env.cli`) so each reads as what it does.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import logging.handlers
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from geolibre_env.errors import GeoLibreError
from geolibre_env.install.protocol import EVENT_PROGRESS
from geolibre_env.progress import CancelToken, ProgressEvent, ProgressSink
from geolibre_env.redact import RedactingFilter, register_secret
from geolibre_env.screen_text import fit, terminal_width
from geolibre_env.settings import EnvSettings

log = logging.getLogger("geolibre.cli")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: EnvSettings, verbose: bool) -> None:
    logger = logging.getLogger("geolibre")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    redacting = RedactingFilter()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.addFilter(redacting)
    handlers: list[logging.Handler] = [console]
    try:
        settings.paths.logs.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            settings.paths.install_log, maxBytes=5 * 1024 * 1024, backupCount=3, encoding="utf-8"
        )
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        file_handler.addFilter(redacting)
        handlers.append(file_handler)
    except OSError:
        pass
    logger.handlers[:] = handlers


def screen(text: str) -> str:
    """A report for stdout: wrapped to the terminal's width when it is one."""
    return fit(text, terminal_width(sys.stdout))


class JsonLines:
    """``--events``: one JSON object per line on stdout, for the sidecar to read."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def write(self, data: dict[str, Any]) -> None:
        with self._lock:
            self.stream.write(json.dumps(data, separators=(",", ":"), default=str) + "\n")
            self.stream.flush()

    def __call__(self, event: ProgressEvent) -> None:
        self.write({"event": EVENT_PROGRESS, **event.to_dict()})


def read_token(args: argparse.Namespace, settings: EnvSettings) -> str | None:
    """From a file, stdin, a hidden prompt, or HF_TOKEN; never echoed or logged."""
    token: str | None = None
    if getattr(args, "token_file", None):
        try:
            token = Path(args.token_file).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise GeoLibreError(
                f"Cannot read the token file {args.token_file}: {exc.strerror}."
            ) from None
    elif getattr(args, "token_stdin", False):
        token = sys.stdin.readline().strip()
    elif getattr(args, "ask_token", False):
        token = getpass.getpass("Hugging Face token (input hidden): ").strip()
    token = token or settings.hub_token
    register_secret(token)
    return token or None


def install_signals(cancel: CancelToken) -> None:
    """First Ctrl-C (or SIGTERM) cancels cleanly; a second one exits at once."""

    def handler(signum: int, _frame: object) -> None:
        if cancel.cancelled:
            raise KeyboardInterrupt
        cancel.cancel()

    for name in ("SIGINT", "SIGTERM"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)


def cancel_when_parent_exits(pid: int, cancel: CancelToken) -> None:
    """The sidecar that started us died: stop the way a cancel would (clean, resumable)."""
    from geolibre_env.process_tree import ParentWatch

    def on_parent_gone() -> None:
        log.warning("the parent process %d exited; cancelling the install", pid)
        cancel.cancel()

    ParentWatch(pid).watch_in_thread(on_parent_gone)


def progress_sink(args: argparse.Namespace) -> tuple[ProgressSink, Callable[[], None]]:
    if getattr(args, "events", False):
        return JsonLines(sys.stdout), lambda: None
    if getattr(args, "json", False):
        return (lambda _e: None), lambda: None
    from geolibre_env.terminal_progress import TerminalProgress

    bar = TerminalProgress(sys.stderr)
    return bar, bar.finish
