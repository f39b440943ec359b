"""Installing the model environment: plan, provision, verify, uninstall, bundles.

Planning (:mod:`.plan`, :mod:`.planning`) decides; provisioning
(:mod:`.provision`, :mod:`.build_steps`, :mod:`.staging`) does; :mod:`.protocol`
is the contract with the sidecar. ``model_probe`` is a script run by path with
the model environment's Python.

The names below load on first use: the sidecar imports :mod:`.protocol` at
start-up and must not pay for the whole installer (about 0.15 s) to do so.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geolibre_env.install.plan import InstallPlan
    from geolibre_env.install.provision import Provisioner, run_install
    from geolibre_env.install.request import InstallRequest, InstallResult
    from geolibre_env.install.staging import processes_using
    from geolibre_env.install.uninstall import UninstallReport
    from geolibre_env.install.verify import VerifyReport, run_probe

_WHERE = {
    "InstallPlan": "plan",
    "InstallRequest": "request",
    "InstallResult": "request",
    "Provisioner": "provision",
    "processes_using": "staging",
    "run_install": "provision",
    "UninstallReport": "uninstall",
    "VerifyReport": "verify",
    "run_probe": "verify",
}

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
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
