"""Restart rules: backoff with jitter, crash-loop verdict, causes a restart cannot fix."""

from __future__ import annotations

import random

import pytest
from geolibre_env.backend.exit_causes import ExitCause
from geolibre_env.backend.restart_policy import RestartPolicy, RestartTracker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tracker(**policy) -> tuple[RestartTracker, Clock]:
    clock = Clock()
    return RestartTracker(RestartPolicy(**policy), clock=clock, rng=random.Random(7)), clock


def test_backoff_doubles_within_jitter_then_gives_up_as_a_crash_loop():
    t, clock = tracker(max_restarts=3, jitter=0.2, backoff_initial_s=1.0)
    delays = []
    for _ in range(3):
        decision = t.on_crash(ExitCause.CRASHED, ready_for_s=1.0)
        assert decision.restart
        delays.append(decision.delay_s)
        clock.now += 2
    for delay, base in zip(delays, (1, 2, 4), strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    verdict = t.on_crash(ExitCause.CRASHED, ready_for_s=1.0)
    assert not verdict.restart
    assert "crash loop" in verdict.reason and "4 times" in verdict.reason


def test_backoff_is_capped():
    t, _ = tracker(max_restarts=20, backoff_initial_s=1.0, backoff_max_s=5.0, jitter=0.0)
    decisions = [t.on_crash(ExitCause.CRASHED, ready_for_s=None) for _ in range(8)]
    assert max(d.delay_s for d in decisions) == 5.0


def test_crashes_outside_the_window_are_forgotten():
    t, clock = tracker(max_restarts=2, window_s=60)
    t.on_crash(ExitCause.CRASHED, ready_for_s=1)
    t.on_crash(ExitCause.CRASHED, ready_for_s=1)
    clock.now += 61
    assert t.on_crash(ExitCause.CRASHED, ready_for_s=1).restart
    assert t.recent_crashes == 1


def test_a_long_good_run_starts_a_new_episode():
    t, _ = tracker(max_restarts=2, stable_after_s=10)
    t.on_crash(ExitCause.CRASHED, ready_for_s=1)
    t.on_crash(ExitCause.CRASHED, ready_for_s=1)
    decision = t.on_crash(ExitCause.CUDA_OOM, ready_for_s=600)
    assert decision.restart and t.recent_crashes == 1


@pytest.mark.parametrize(
    "cause",
    [ExitCause.MISSING_MODULE, ExitCause.NO_NVIDIA_DRIVER, ExitCause.WEIGHTS_GATED,
     ExitCause.COMMAND_NOT_FOUND, ExitCause.WEIGHTS_MISSING],
)  # fmt: skip
def test_causes_a_restart_cannot_fix_are_not_retried(cause):
    t, _ = tracker()
    assert not t.on_crash(cause, ready_for_s=100).restart


def test_reset_clears_a_crash_loop_verdict():
    t, _ = tracker(max_restarts=1)
    t.on_crash(ExitCause.CRASHED, ready_for_s=1)
    assert not t.on_crash(ExitCause.CRASHED, ready_for_s=1).restart
    t.reset()
    assert t.on_crash(ExitCause.CRASHED, ready_for_s=1).restart
