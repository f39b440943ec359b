"""The offline bundle: the archive format, exporting one, installing from one."""

from geolibre_env.install.bundle.archive import BundleError, Manifest, read_manifest
from geolibre_env.install.bundle.export import BundleExporter, ExportResult
from geolibre_env.install.bundle.target import ExportTarget, describe_target

__all__ = [
    "BundleError",
    "BundleExporter",
    "ExportResult",
    "ExportTarget",
    "Manifest",
    "describe_target",
    "read_manifest",
]
