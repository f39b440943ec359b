"""``geolibre-ml install --from BUNDLE``: the install on a computer with no network.

Every file of the bundle is checked against its manifest before anything is
used (:func:`geolibre_env.install.bundle.archive.open_bundle`). Then the ordinary install runs
with the bundle as its only package source - uv offline, no index, the
bundle's wheels as find-links - and the weights and the tokenizer vocabulary
are moved into place instead of downloaded. Nothing here opens a connection.
"""

from __future__ import annotations

import dataclasses
import platform
import shutil
from typing import TYPE_CHECKING

from geolibre_env.errors import ConfigError, WeightsError
from geolibre_env.install.bundle.archive import BundleError, OpenedBundle, open_bundle
from geolibre_env.install.bundle.target import describe_target
from geolibre_env.install.bundle.weights import BundledWeights, place_weights
from geolibre_env.install.plan import InstallPlan, Reason
from geolibre_env.install.planning import make_install_plan
from geolibre_env.install.sources import BundleSource, describe_sources
from geolibre_env.machine.detect import normalize_arch, os_name
from geolibre_env.model_env import ActiveEnvironment

if TYPE_CHECKING:
    from geolibre_env.install.provision import InstallRequest, InstallResult, Provisioner

PROGRESS_EVERY_BYTES = 64 * 2**20
NEW_BUNDLE_HINT = "Export a bundle for this computer (see `geolibre-ml bundle export --help`)."


def install_from_bundle(provisioner: Provisioner, request: InstallRequest) -> InstallResult:
    """Check, then install from ``request.bundle``; the caller holds the install lock."""
    assert request.bundle is not None
    archive = request.bundle.expanduser().absolute()
    staging = provisioner.staging_dir
    with provisioner.timed("bundle"):
        provisioner.emit("bundle", f"checking every file of {archive.name}")
        bundle = open_bundle(
            archive, staging, progress=_progress(provisioner), cancel=provisioner.cancel
        )
    try:
        target = bundle.manifest.target
        _check_fits(provisioner, bundle, request)
        provisioner.emit("bundle", f"{archive.name} is complete and every checksum matches")
        with provisioner.timed("plan"):
            plan = make_install_plan(
                provisioner.settings,
                provisioner.spec,
                uv=provisioner.uv,
                backend=target["backend"],
                build=target["build"],
                python_minor=target["python"],
            )
        if plan.python is None:
            raise BundleError(
                f"{archive.name} is for Python {target['python']}, which this computer lacks.",
                f"Install Python {target['python']}, or export a bundle with --python set to "
                f"the Python this computer has.",
            )
        sources = describe_sources(
            provisioner.settings,
            torch_index_url=plan.torch_index_url,
            torch_from="--from",
            bundle=archive,
        )
        build = plan.torch_build
        reasons = tuple(
            Reason("torch", f"The {build.name} build (torch {build.torch}) comes from the "
                   f"offline bundle {archive.name}, made for {describe_target(target)}.")
            if reason.topic == "torch" else reason
            for reason in plan.reasons
        )  # fmt: skip
        plan = dataclasses.replace(plan, sources=sources, reasons=reasons)

        def weights(plan: InstallPlan, env: ActiveEnvironment, result: InstallResult) -> None:
            _place_weights(provisioner, bundle, env, result)

        return provisioner.install_with(
            request, plan=plan, source=BundleSource(bundle.wheels, archive), after_switch=weights
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_fits(provisioner: Provisioner, bundle: OpenedBundle, request: InstallRequest) -> None:
    """The bundle was made for this computer and this version of the spec."""
    target, name = bundle.manifest.target, bundle.archive.name
    here = (os_name(platform.system()), normalize_arch(platform.machine()))
    if (target["os"], target["arch"]) != here:
        raise BundleError(
            f"{name} is for {target['os']} {target['arch']}, and this computer is "
            f"{here[0]} {here[1]}.",
            NEW_BUNDLE_HINT,
        )
    made_for = bundle.manifest.data.get("spec", {})
    spec = provisioner.spec
    if made_for.get("fingerprint") != spec.fingerprint:
        raise BundleError(
            f"{name} was made for the model environment {made_for.get('name')} (spec "
            f"{made_for.get('fingerprint')}), and this geolibre-ml installs {spec.name} (spec "
            f"{spec.fingerprint}).",
            "Export the bundle with the same version of geolibre-ml as this computer has.",
        )
    for option, value in (("--backend", request.backend), ("--build", request.build)):
        wanted = target["backend" if option == "--backend" else "build"]
        if value is not None and value != wanted:
            raise ConfigError(
                f"{name} holds the {wanted} {option[2:]}, not {value}.",
                hint=f"Leave out {option}, or export a bundle with {option} {value}.",
            )


def _place_weights(
    provisioner: Provisioner,
    bundle: OpenedBundle,
    env: ActiveEnvironment,
    result: InstallResult,
) -> None:
    data = bundle.manifest.data
    with provisioner.timed("weights"):
        provisioner.emit("weights", "putting the SAM 3 weights from the bundle in place")
        if not data.get("weights"):
            result.weights_error = f"{bundle.archive.name} carries no SAM 3 weights."
            return
        try:
            weights = BundledWeights.from_dict(data["weights"], folder=bundle.root / "weights")
        except (ValueError, KeyError, TypeError) as exc:
            raise BundleError(
                f"The weights part of {bundle.archive.name}'s manifest is unusable ({exc}).",
                NEW_BUNDLE_HINT,
            ) from None
        vocab = bundle.path(data["vocab"]) if data.get("vocab") else None
        try:
            status = place_weights(
                provisioner.settings,
                provisioner.spec,
                weights,
                vocab=vocab,
                site_packages=env.site_packages,
            )
        except WeightsError as exc:
            result.weights_error = str(exc)
            return
        result.weights = status.to_dict()
        if not status.present:
            result.weights_error = (
                f"After installing from {bundle.archive.name}, these are still missing: "
                f"{', '.join(status.missing)}."
            )


def _progress(provisioner: Provisioner):  # type: ignore[no-untyped-def]
    last = [0]

    def report(done: int, total: int) -> None:
        if done - last[0] >= PROGRESS_EVERY_BYTES or done == total:
            last[0] = done
            provisioner.emit("bundle", "checking the bundle", done=done, total=total, unit="bytes")

    return report
