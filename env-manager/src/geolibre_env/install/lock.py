"""A cross-process lock so two installs never build at once.

An OS file lock (released by the kernel when its holder dies, even by
SIGKILL) plus the holder's pid and start time written inside, so a refused
second install can say who holds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from geolibre_env.errors import InstallBusyError, InstallCancelledError
from geolibre_env.progress import CancelToken

WAIT_POLL_S = 0.25


class InstallLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def holder(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return None
        return data or None

    def _try_lock(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held while locked
        try:
            if sys.platform == "win32":  # pragma: no cover
                import msvcrt

                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "started_at": time.time()}))
        handle.flush()
        self._file = handle
        return True

    def acquire(
        self,
        *,
        wait: bool = False,
        cancel: CancelToken | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        """Take the lock, or raise :class:`InstallBusyError` (``wait``: until free).

        ``on_wait`` hears once, with who holds the lock, when waiting begins.
        """
        told = False
        while not self._try_lock():
            if not wait:
                raise InstallBusyError(self._busy_message(), hint=(
                    "Wait for it to finish (or cancel it), then try again; "
                    "`geolibre-ml install --wait` queues behind it."
                ))  # fmt: skip
            if on_wait is not None and not told:
                on_wait(self._busy_message())
                told = True
            if cancel is not None and cancel.wait(WAIT_POLL_S):
                raise InstallCancelledError("The install was cancelled while waiting its turn.")
            if cancel is None:
                time.sleep(WAIT_POLL_S)

    def _busy_message(self) -> str:
        info = self.holder() or {}
        pid, started = info.get("pid"), info.get("started_at")
        since = f", started {int(time.time() - started)} s ago" if started else ""
        who = f" (pid {pid}{since})" if pid else ""
        return f"Another install of the model backend is running{who}."

    def release(self) -> None:
        if self._file is None:
            return
        with contextlib.suppress(OSError):
            self._file.seek(0)
            self._file.truncate()
            self._file.flush()
        self._file.close()  # closing drops the OS lock
        self._file = None

    def __enter__(self) -> InstallLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()
