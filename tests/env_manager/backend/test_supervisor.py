"""The supervisor's state machine, in process: a real tiny child (tiny_backend.py,
steered by its environment, as jupyter_client tests its restarter) and a fake
clock for how long a backend has been ready. The end-to-end supervision through
the sidecar stays in tests/sidecar/test_supervision_*.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import httpx
import psutil
import pytest
from geolibre_env.backend import (
    BackendState,
    ExitCause,
    LaunchSpec,
    RestartPolicy,
    Supervisor,
    SupervisorConfig,
)
from geolibre_env.errors import BackendError
from geolibre_env.paths import Paths

TINY = Path(__file__).with_name("tiny_backend.py")
QUICK = RestartPolicy(max_restarts=2, backoff_initial_s=0.2, backoff_max_s=0.2, jitter=0.0)
DEADLINE_S = 10.0


class FakeClock:
    """Stands still unless a test moves it: "ready for 20 s" without waiting 20 s."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Scenario = Callable[[Supervisor, httpx.AsyncClient], Awaitable[None]]


def drive(
    tmp_path: Path,
    scenario: Scenario,
    *,
    env: Mapping[str, str] | None = None,
    clock: FakeClock | None = None,
    **config: object,
) -> None:
    """Run ``scenario`` against a supervisor of the tiny backend; stop it afterwards."""
    settings = {
        "policy": QUICK,
        "start_stall_s": 5.0,
        "start_timeout_s": 20.0,
        **config,
    }

    def launch() -> LaunchSpec:
        return LaunchSpec(
            (sys.executable, str(TINY)),
            {"PYTHONUNBUFFERED": "1", **(env or {})},
            "a test",
        )

    async def main() -> None:
        async with httpx.AsyncClient(trust_env=False) as http:
            supervisor = Supervisor(
                launch,
                paths=Paths.resolve(tmp_path),
                http=http,
                config=SupervisorConfig(**settings),  # type: ignore[arg-type]
                clock=clock or FakeClock(),
            )
            try:
                await scenario(supervisor, http)
            finally:
                await supervisor.aclose()

    asyncio.run(main())


async def reach(supervisor: Supervisor, state: BackendState) -> float:
    """Wait (with a deadline) until ``state``; return when it was seen (monotonic)."""
    deadline = time.monotonic() + DEADLINE_S
    while supervisor.state is not state:
        assert time.monotonic() < deadline, (
            f"still {supervisor.state} ({supervisor.snapshot()['cause']})"
        )
        await asyncio.sleep(0.01)
    return time.monotonic()


async def crash(http: httpx.AsyncClient, url: str, message: str) -> None:
    with contextlib.suppress(httpx.HTTPError):  # it exits while answering
        await http.get(f"{url}/crash", params={"message": message})


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stopped_starting_ready_busy_and_stopped_again(tmp_path: Path) -> None:
    async def scenario(supervisor: Supervisor, http: httpx.AsyncClient) -> None:
        assert supervisor.state is BackendState.STOPPED
        task = supervisor.begin_start()
        assert task is not None
        assert supervisor.state is BackendState.STARTING  # at once, before it answers
        url = await task
        assert supervisor.state is BackendState.READY
        assert (await http.get(f"{url}/health")).json() == {"version": "tiny"}
        async with supervisor.request():
            assert supervisor.state is BackendState.BUSY
        assert supervisor.state is BackendState.READY
        pid = supervisor.snapshot()["pid"]
        await supervisor.stop()
        assert supervisor.state is BackendState.STOPPED
        assert supervisor.last_exit is not None and supervisor.last_exit.cause is ExitCause.STOPPED
        assert gone(pid)

    drive(tmp_path, scenario)


def test_a_crash_restarts_after_the_backoff(tmp_path: Path) -> None:
    async def scenario(supervisor: Supervisor, http: httpx.AsyncClient) -> None:
        url = await supervisor.ensure_ready()
        first_pid = supervisor.snapshot()["pid"]
        await crash(http, url, "tiny backend crashed on purpose")
        crashed_at = await reach(supervisor, BackendState.RESTARTING)
        assert supervisor.last_exit is not None and supervisor.last_exit.cause is ExitCause.CRASHED
        ready_at = await reach(supervisor, BackendState.READY)
        assert ready_at - crashed_at >= QUICK.backoff_initial_s  # it waited before restarting
        snapshot = supervisor.snapshot()
        assert snapshot["restarts"] == 1 and snapshot["recent_crashes"] == 1
        assert snapshot["pid"] != first_pid and gone(first_pid)

    drive(tmp_path, scenario)


def test_a_crash_loop_ends_in_failed_until_an_explicit_start(tmp_path: Path) -> None:
    async def scenario(supervisor: Supervisor, http: httpx.AsyncClient) -> None:
        await supervisor.ensure_ready()
        for _ in range(QUICK.max_restarts):
            await crash(http, supervisor.url or "", "crashed again")
            await reach(supervisor, BackendState.RESTARTING)
            await reach(supervisor, BackendState.READY)
        await crash(http, supervisor.url or "", "crashed once too often")
        await reach(supervisor, BackendState.FAILED)
        assert "crash loop" in supervisor.snapshot()["cause"]
        with pytest.raises(BackendError, match="not running"):
            await supervisor.ensure_ready()
        await supervisor.start()  # the Start button clears the verdict
        assert supervisor.state is BackendState.READY

    drive(tmp_path, scenario)


def test_a_long_good_run_forgets_earlier_crashes(tmp_path: Path) -> None:
    clock = FakeClock()

    async def scenario(supervisor: Supervisor, http: httpx.AsyncClient) -> None:
        await supervisor.ensure_ready()
        for _ in range(QUICK.max_restarts):
            await crash(http, supervisor.url or "", "crashed")
            await reach(supervisor, BackendState.RESTARTING)
            await reach(supervisor, BackendState.READY)
        clock.advance(QUICK.stable_after_s)  # ready this long: a new episode
        await crash(http, supervisor.url or "", "crashed after a long run")
        await reach(supervisor, BackendState.RESTARTING)
        assert supervisor.snapshot()["recent_crashes"] == 1
        await reach(supervisor, BackendState.READY)

    drive(tmp_path, scenario, clock=clock)


def test_a_cause_a_restart_cannot_fix_is_not_retried(tmp_path: Path) -> None:
    async def scenario(supervisor: Supervisor, http: httpx.AsyncClient) -> None:
        await supervisor.ensure_ready()
        await crash(http, supervisor.url or "", "ModuleNotFoundError: No module named 'sam3'")
        await reach(supervisor, BackendState.FAILED)
        assert supervisor.last_exit is not None
        assert supervisor.last_exit.cause is ExitCause.MISSING_MODULE
        assert "Not restarting" in supervisor.snapshot()["cause"]
        assert supervisor.snapshot()["restarts"] == 0

    drive(tmp_path, scenario)


def test_a_failed_start_is_failed_with_its_cause(tmp_path: Path) -> None:
    async def scenario(supervisor: Supervisor, http: httpx.AsyncClient) -> None:
        with pytest.raises(BackendError):
            await supervisor.ensure_ready()
        assert supervisor.state is BackendState.FAILED
        assert supervisor.last_exit is not None
        assert supervisor.last_exit.cause is ExitCause.MISSING_MODULE

    drive(
        tmp_path,
        scenario,
        env={"TINY_FAIL_START": "ModuleNotFoundError: No module named 'x'"},
    )


@pytest.mark.parametrize(
    ("env", "limits", "cause"),
    [
        ({"TINY_HANG": "1"}, {"start_stall_s": 0.5}, ExitCause.START_STALLED),
        ({"TINY_CHATTER": "1"}, {"start_timeout_s": 0.8}, ExitCause.START_TIMEOUT),
    ],
    ids=["silent-and-idle", "busy-but-never-answers"],
)
def test_a_start_that_never_answers_is_stopped(
    tmp_path: Path, env: dict[str, str], limits: dict[str, float], cause: ExitCause
) -> None:
    async def scenario(supervisor: Supervisor, http: httpx.AsyncClient) -> None:
        task = supervisor.begin_start()
        assert task is not None and supervisor.state is BackendState.STARTING
        with pytest.raises(BackendError):
            await task
        assert supervisor.state is BackendState.FAILED
        assert supervisor.last_exit is not None and supervisor.last_exit.cause is cause
        assert supervisor.snapshot()["pid"] is None  # its process was stopped

    drive(tmp_path, scenario, env=env, **limits)
