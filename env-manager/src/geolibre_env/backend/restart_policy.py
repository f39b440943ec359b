"""When to restart a crashed backend, how long to wait, and when to give up.

Pure rules with an injectable clock and random source, so every branch is
unit-tested; the supervisor asks, the process module acts.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from geolibre_env.backend.exit_causes import PERMANENT_CAUSES, ExitCause


@dataclass(frozen=True)
class RestartPolicy:
    """Defaults follow jupyter_client's restarter: a few quick retries, then stop."""

    max_restarts: int = 3  # crashes tolerated within ``window_s``
    window_s: float = 300.0
    stable_after_s: float = 10.0  # ready this long = a good start, not part of a loop
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    jitter: float = 0.2  # +/- fraction, so many sidecars do not retry in step


@dataclass(frozen=True)
class RestartDecision:
    restart: bool
    delay_s: float
    reason: str


class RestartTracker:
    """Remembers recent crashes and turns each new one into a decision."""

    def __init__(
        self,
        policy: RestartPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._rng = rng or random.Random()
        self._crashes: deque[float] = deque()

    @property
    def recent_crashes(self) -> int:
        self._forget_old()
        return len(self._crashes)

    def reset(self) -> None:
        """A user's explicit start clears the history (and a crash loop verdict)."""
        self._crashes.clear()

    def on_crash(self, cause: ExitCause, *, ready_for_s: float | None) -> RestartDecision:
        """Decide after a crash; ``ready_for_s`` is how long it had been ready (None: never)."""
        now = self._clock()
        if cause in PERMANENT_CAUSES:
            return RestartDecision(False, 0.0, "restarting cannot fix this cause")
        if ready_for_s is not None and ready_for_s >= self.policy.stable_after_s:
            # A long good run: earlier crashes were a different episode.
            self._crashes.clear()
        self._crashes.append(now)
        self._forget_old()
        count = len(self._crashes)
        if count > self.policy.max_restarts:
            minutes = self.policy.window_s / 60
            return RestartDecision(
                False,
                0.0,
                f"crash loop: it crashed {count} times within {minutes:g} minutes, "
                "so the sidecar stopped restarting it",
            )
        base = min(self.policy.backoff_max_s, self.policy.backoff_initial_s * 2 ** (count - 1))
        delay = base * (1 + self._rng.uniform(-self.policy.jitter, self.policy.jitter))
        return RestartDecision(
            True,
            delay,
            f"restart {count} of {self.policy.max_restarts} in {delay:.1f} s",
        )

    def _forget_old(self) -> None:
        horizon = self._clock() - self.policy.window_s
        while self._crashes and self._crashes[0] < horizon:
            self._crashes.popleft()
