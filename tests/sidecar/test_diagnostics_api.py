"""The doctor through the app: ``GET /ml/diagnostics`` and its zip, redacted,
with the sidecar's own settings as the app passed them."""

from __future__ import annotations

import io
import zipfile

import pytest

pytestmark = pytest.mark.slow

SECRET = "hf_DiagnosticsSecret0123456789abcdefXYZ"


def test_the_report_names_the_sidecar_settings_without_secrets_or_blanks(sidecar_factory):
    sidecar = sidecar_factory(
        env={
            "HF_TOKEN": SECRET,
            "GEOLIBRE_ML_MAX_IN_FLIGHT": "2",
            "GEOLIBRE_ML_CORS_ORIGINS": "",  # what a launcher passes for "left alone"
            "GEOLIBRE_ML_NVIDIA_SMI": "/nonexistent/nvidia-smi",
        }
    )
    with sidecar.client(timeout_s=60) as client:
        response = client.get("/ml/diagnostics")
        bundle = client.get("/ml/diagnostics/bundle")
    assert response.status_code == 200
    report = response.json()
    checks = {check["id"]: check for check in report["checks"]}
    detail = checks["sidecar"]["detail"]
    assert f"pid {sidecar.proc.pid}" in detail
    assert "GEOLIBRE_ML_MAX_IN_FLIGHT=2" in detail
    assert "GEOLIBRE_ML_CORS_ORIGINS" not in detail, "an empty setting is noise"
    assert "HF_TOKEN=***" in detail
    assert SECRET not in response.text
    assert bundle.status_code == 200
    assert bundle.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        content = b"".join(archive.read(name) for name in archive.namelist())
        assert "report.json" in archive.namelist()
    assert SECRET.encode() not in content
