"""The leftover check finds what tests start, and fails when something is left."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness.processes import assert_nothing_left, wait_gone, with_marker
from tests.harness.sidecar import base_env


def test_the_sidecar_and_its_children_carry_the_marker(sidecar_factory, marker):
    sidecar = sidecar_factory()
    assert sidecar.pid in [p.pid for p in with_marker(marker)]
    sidecar.terminate()
    assert_nothing_left(marker, timeout_s=10)


def test_a_process_deliberately_left_behind_is_caught(tmp_path, marker):
    # Its own session and no marker on its command line: only the environment tells.
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env=base_env(tmp_path, marker),
        start_new_session=True,
    )
    try:
        with pytest.raises(AssertionError, match=str(orphan.pid)):
            assert_nothing_left(marker, timeout_s=0.5)
    finally:
        orphan.kill()
        orphan.wait()
    wait_gone([orphan.pid], timeout_s=5)
    assert_nothing_left(marker, timeout_s=1)
