"""A bounded random fuzz of every route against the real sidecar (uvicorn) in
front of the stand-in: no 5xx of our making, no slow answers, no exit, no
traceback. The seed is printed; rerun one with GEOLIBRE_FUZZ_SEED=<seed>."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from geolibre_env.model_env import COMPLETE_MARKER, env_python
from geolibre_env.paths import Paths

from tests.conftest import CLOSED_HUB
from tests.harness.fuzz import choose_seed, run_fuzz
from tests.standin.harness import make_png, start_standin

REQUESTS = 5000


def model_environment(home: Path) -> None:
    """A model environment whose Python is this one: ``POST /ml/jobs`` then reads and
    checks its upload instead of answering 409 (no model environment) at once; the
    jobs it accepts fail in the tile runner (no rasterio here), a state, not a 5xx."""
    root = Paths.resolve(home).envs_dir / "env-fuzz"
    python = env_python(root)
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    (root / COMPLETE_MARKER).write_text(json.dumps({"python": sys.version.split()[0]}))
    Paths.resolve(home).active_pointer.write_text(json.dumps({"env": "env-fuzz"}))


@pytest.fixture
def fuzz_target(sidecar_factory, tmp_path, ml_home):
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    model_environment(ml_home)
    with start_standin() as standin:
        sidecar = sidecar_factory(
            env={
                "GEOLIBRE_ML_SAMGEO_URL": standin.url,
                # An install the fuzzer happens to start fails fast, offline.
                "UV_OFFLINE": "1",
                "UV_NO_INDEX": "1",
                "UV_FIND_LINKS": str(empty),
                "HF_ENDPOINT": CLOSED_HUB,
            }
        )
        yield sidecar


def test_fuzz_every_route(fuzz_target):
    sidecar = fuzz_target
    seed = choose_seed()
    print(f"\nfuzz seed {seed} (rerun with GEOLIBRE_FUZZ_SEED={seed})")
    started = time.monotonic()
    report = run_fuzz(sidecar.ready["port"], sidecar.token, make_png(64, 48), seed=seed,
                      requests=REQUESTS)  # fmt: skip
    took = time.monotonic() - started
    counts = dict(sorted(report.counts().items()))
    print(f"fuzzed {len(report.outcomes)} requests in {took:.1f} s: {counts}")
    failures = report.failures()
    assert not failures, f"seed {seed}: {len(failures)} failures, e.g.\n" + "\n".join(failures[:10])
    assert len(report.outcomes) == REQUESTS
    assert sidecar.proc.poll() is None, f"seed {seed}: the sidecar exited"
    with sidecar.client() as client:
        assert client.get("/health").status_code == 200
    log = sidecar.stderr()
    assert "Traceback" not in log, f"seed {seed}: a traceback in the log:\n{log[-3000:]}"
    # Malformed requests are summarised (one line per 10 s), not logged one by one.
    malformed = log.count("Invalid HTTP request received.")
    assert malformed <= took / 10 + 2, f"{malformed} lines about malformed requests"
