"""The copies in the repository are the steering repository's reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reference import APP_CONTRACT, OPENAPI, SHARED_REFERENCE


@pytest.mark.parametrize("copy", [OPENAPI, APP_CONTRACT], ids=lambda path: path.name)
def test_the_copy_matches_the_shared_reference(copy: Path):
    original = SHARED_REFERENCE / copy.name
    if not original.exists():
        pytest.skip("no shared/ beside this checkout")
    assert copy.read_bytes() == original.read_bytes()
