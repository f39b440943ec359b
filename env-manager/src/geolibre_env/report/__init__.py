"""What `geolibre-ml doctor`, `geolibre-ml status` and `/ml/diagnostics` report."""

from geolibre_env.report.diagnostics import run_diagnostics
from geolibre_env.report.doctor_output import bundle_bytes, print_report, write_bundle
from geolibre_env.report.sidecar import sidecar_facts
from geolibre_env.report.state import collect_status, format_status

__all__ = [
    "bundle_bytes",
    "collect_status",
    "format_status",
    "print_report",
    "run_diagnostics",
    "sidecar_facts",
    "write_bundle",
]
