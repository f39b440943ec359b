"""Logging: stderr plus a size-rotated file under platformdirs' log folder, both
redacted. stdout is never used: it carries only the launcher's ready line.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import TextIO

from geolibre_env.redact import RedactingFilter

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_LOG_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3
# Loggers whose records we want in our files, at our level.
OUR_LOGGERS = ("geolibre", "uvicorn.error")


def configure_logging(level: str, log_file: Path | None, *, stream: TextIO | None = None) -> None:
    """Send our loggers to ``stream`` (stderr) and ``log_file``; safe to call twice."""
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(
                logging.handlers.RotatingFileHandler(
                    log_file, maxBytes=MAX_LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
                )
            )
        except OSError as exc:  # a read-only profile must not stop the sidecar
            print(f"geolibre-sidecar: cannot write {log_file}: {exc}", file=stream or sys.stderr)
    formatter = logging.Formatter(LOG_FORMAT)
    redacting = RedactingFilter()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(redacting)
    for name in OUR_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = False
