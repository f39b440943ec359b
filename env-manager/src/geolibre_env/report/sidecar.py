"""The sidecar's part of the report: its own facts (secrets masked) and their check."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from geolibre_env.redact import redact_mapping
from geolibre_env.report.types import Check


def sidecar_facts(environ: Mapping[str, str], version: str) -> dict[str, Any]:
    """A sidecar's own facts as the report shows them (secrets masked)."""
    # Empty variables are what a launcher passes when a setting is left alone: noise here.
    ours = {k: v for k, v in environ.items() if k.startswith(("GEOLIBRE_", "UV_", "HF_")) and v}
    facts = {"pid": os.getpid(), "python": sys.version.split()[0], "version": version, "env": ours}
    return redact_mapping(facts)


def check_sidecar(sidecar: Mapping[str, Any] | None) -> Check:
    if sidecar is None:
        return Check("sidecar", "Sidecar", "ok", "Not asked through a running sidecar.")
    facts = redact_mapping(dict(sidecar))
    settings = ", ".join(f"{k}={v}" for k, v in sorted((facts.get("env") or {}).items()))
    return Check(
        "sidecar", "Sidecar", "ok",
        f"geolibre-sidecar {facts.get('version')} (pid {facts.get('pid')}, Python "
        f"{facts.get('python')}); settings: {settings or 'defaults'}.",
        data=facts,
    )  # fmt: skip
