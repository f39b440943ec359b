"""Fixtures for the stand-in's own tests: one shared server, reset after each test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .harness import StandinProcess, start_standin


@pytest.fixture(scope="module")
def standin_server() -> Iterator[StandinProcess]:
    with start_standin() as process:
        yield process


@pytest.fixture
def standin(standin_server: StandinProcess) -> Iterator[StandinProcess]:
    """The shared stand-in with default switches and an empty model cache."""
    initial = standin_server.switches()
    yield standin_server
    standin_server.set_switches(**initial)
    standin_server.request("DELETE", "/models")


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as http:
        yield http
