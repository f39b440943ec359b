"""``geolibre-ml install --from BUNDLE``: the install on a computer with no network.

Every file of the bundle is checked against its manifest before anything is
used (:func:`geolibre_env.install.bundle.archive.open_bundle`). Then the ordinary install runs
with the bundle as its only package source - uv offline, no index, the
bundle's wheels as find-links - and the weights and the tokenizer vocabulary
are moved into place instead of downloaded. Nothing here opens a connection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from geolibre_env.errors import ConfigError, WeightsError
from geolibre_env.install.bundle.archive import BundleError, OpenedBundle, open_bundle
from geolibre_env.install.bundle.target import describe_target
from geolibre_env.install.bundle.weights import BundledWeights, place_weights
from geolibre_env.install.plan import InstallPlan, Reason
from geolibre_env.install.planning import make_install_plan
from geolibre_env.install.request import InstallRequest, InstallResult
from geolibre_env.install.sources import BundleSource, PackageSource, describe_sources
from geolibre_env.machine.detect import normalize_arch, os_name
from geolibre_env.model_env import ActiveEnvironment
from geolibre_env.progress import CancelToken
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec
from geolibre_env.uv.runner import UvTool

PROGRESS_EVERY_BYTES = 64 * 2**20
NEW_BUNDLE_HINT = "Export a bundle for this computer (see `geolibre-ml bundle export --help`)."

AfterSwitch = Callable[[InstallPlan, ActiveEnvironment, InstallResult], None]


class InstallHost(Protocol):
    """What the bundle install needs of the install that runs it (the
    :class:`~geolibre_env.install.provision.Provisioner` is one). This module
    depends on this interface only, never on the provisioner."""

    settings: EnvSettings
    cancel: CancelToken

    @property
    def spec(self) -> ModelEnvSpec: ...

    @property
    def uv(self) -> UvTool: ...

    @property
    def staging_dir(self) -> Path:
        """Where the bundle is unpacked while it is checked and installed."""
        ...

    def emit(self, phase: str, message: str, **kwargs: Any) -> None:
        """A progress event on the install's stream."""
        ...

    def timed(self, phase: str) -> contextlib.AbstractContextManager[None]:
        """Time a phase into the result's ``timings_s``."""
        ...


@dataclasses.dataclass(frozen=True)
class BundledInstall:
    """What the ordinary install runs with to install from a checked bundle: this
    plan and package source, and ``after_switch`` in place of the weights download."""

    plan: InstallPlan
    source: PackageSource
    after_switch: AfterSwitch


@contextlib.contextmanager
def bundled_install(host: InstallHost, request: InstallRequest) -> Iterator[BundledInstall]:
    """Check ``request.bundle`` and give what installing from it takes; the unpacked
    bundle stays until the block ends. The caller holds the install lock."""
    assert request.bundle is not None
    archive = request.bundle.expanduser().absolute()
    staging = host.staging_dir
    with host.timed("bundle"):
        host.emit("bundle", f"checking every file of {archive.name}")
        bundle = open_bundle(archive, staging, progress=_progress(host), cancel=host.cancel)
    try:
        target = bundle.manifest.target
        _check_fits(host, bundle, request)
        host.emit("bundle", f"{archive.name} is complete and every checksum matches")
        with host.timed("plan"):
            plan = make_install_plan(
                host.settings,
                host.spec,
                uv=host.uv,
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
            host.settings,
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
            _place_weights(host, bundle, env, result)

        yield BundledInstall(plan, BundleSource(bundle.wheels, archive), weights)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_fits(host: InstallHost, bundle: OpenedBundle, request: InstallRequest) -> None:
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
    spec = host.spec
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
    host: InstallHost,
    bundle: OpenedBundle,
    env: ActiveEnvironment,
    result: InstallResult,
) -> None:
    data = bundle.manifest.data
    with host.timed("weights"):
        host.emit("weights", "putting the SAM 3 weights from the bundle in place")
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
                host.settings,
                host.spec,
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


def _progress(host: InstallHost):  # type: ignore[no-untyped-def]
    last = [0]

    def report(done: int, total: int) -> None:
        if done - last[0] >= PROGRESS_EVERY_BYTES or done == total:
            last[0] = done
            host.emit("bundle", "checking the bundle", done=done, total=total, unit="bytes")

    return report
