"""Installing the model environment: plan, provision, verify, uninstall, bundles.

Planning (:mod:`.plan`, :mod:`.planning`) decides; provisioning
(:mod:`.provision`) does. ``model_probe`` is not imported here: it is a script
run by path with the model environment's Python.
"""

from geolibre_env.install.plan import InstallPlan
from geolibre_env.install.provision import (
    InstallRequest,
    InstallResult,
    Provisioner,
    processes_using,
    run_install,
)
from geolibre_env.install.uninstall import UninstallReport, targets, uninstall
from geolibre_env.install.verify import VerifyReport, run_probe

__all__ = [
    "InstallPlan",
    "InstallRequest",
    "InstallResult",
    "Provisioner",
    "UninstallReport",
    "VerifyReport",
    "processes_using",
    "run_install",
    "run_probe",
    "targets",
    "uninstall",
]
