"""pytest plugin that ``dev.py test`` loads: a run that selects no tests fails (exit 1).

pytest's own code for it is 5, which CI scripts easily mistake for a pass-through
"nothing to do"; a typo in ``-k`` must not look like a green suite.
"""

from __future__ import annotations

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
