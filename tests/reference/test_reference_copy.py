"""The schema copy in the repository is the steering repository's reference."""

from __future__ import annotations

import pytest

from tests.reference import OPENAPI, SHARED_OPENAPI


@pytest.mark.skipif(not SHARED_OPENAPI.exists(), reason="no shared/ beside this checkout")
def test_the_copy_matches_the_shared_reference():
    assert OPENAPI.read_bytes() == SHARED_OPENAPI.read_bytes()
