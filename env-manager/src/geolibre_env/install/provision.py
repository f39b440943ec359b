"""Provisioning the model environment with uv: plan, stage, install, verify, switch.

Each build happens in its own folder under ``envs/`` (:mod:`.staging`); a
journal records the steps (:mod:`.build_steps`) so a re-run resumes. Only after
verification does the build get its completion marker (written last inside
it), and only then does ``active.json`` switch to it (an atomic rename). A kill
at any moment therefore leaves the previous environment, or none, in use: never
a half-built one.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from geolibre_env.errors import (
    GeoLibreError,
    InstallBusyError,
    InstallCancelledError,
    InstallError,
    ToolError,
    WeightsError,
)
from geolibre_env.install.build_steps import BUILD_STEPS, EnvBuilder, Steps
from geolibre_env.install.bundle.install import AfterSwitch, bundled_install
from geolibre_env.install.failures import (
    KINDS,
    ClassifiedInstallError,
    InstallFailure,
)
from geolibre_env.install.journal import Journal
from geolibre_env.install.lock import InstallLock
from geolibre_env.install.plan import InstallPlan
from geolibre_env.install.planning import make_install_plan, plan_hash
from geolibre_env.install.probe_cache import remember_probe
from geolibre_env.install.request import InstallRequest, InstallResult
from geolibre_env.install.sources import IndexSource, PackageSource
from geolibre_env.install.staging import (
    collect_garbage,
    staging_root,
    stop_strays,
)
from geolibre_env.install.verify import VerifyReport, run_probe
from geolibre_env.model_env import (
    COMPLETE_MARKER,
    ActiveEnvironment,
    active_environment,
    read_json,
    write_json_atomic,
)
from geolibre_env.progress import CancelToken, ProgressSink, discard
from geolibre_env.redact import redact_url
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec, load_spec
from geolibre_env.uv.runner import UvTool, find_uv
from geolibre_env.weights.models import fetch_model
from geolibre_env.weights.sam3 import fetch_weights, store_token

DRY_RUN_HINT = "`geolibre-ml install --dry-run` shows the full plan and checks each source."
# Failures outside the build folder: rebuilding a resumed build from scratch cannot help.
EXTERNAL = frozenset(KINDS) - {"checksum", "unknown"}


class Provisioner:
    """Builds, verifies and switches in model environments for one settings object.

    Also the :class:`~geolibre_env.install.bundle.install.InstallHost` an offline
    bundle install runs in (``staging_dir``, ``emit``, ``timed``)."""

    def __init__(
        self,
        settings: EnvSettings,
        *,
        progress: ProgressSink = discard,
        cancel: CancelToken | None = None,
        spec: ModelEnvSpec | None = None,
        uv: UvTool | None = None,
    ) -> None:
        self.settings = settings
        self.paths = settings.paths
        self.cancel = cancel or CancelToken()
        self._steps = Steps(progress)
        self._spec = spec
        self._uv = uv

    @property
    def spec(self) -> ModelEnvSpec:
        if self._spec is None:
            self._spec = load_spec(self.settings.spec_path)
        return self._spec

    @property
    def uv(self) -> UvTool:
        if self._uv is None:
            self._uv = find_uv(self.settings)
        return self._uv

    def plan(self, *, backend: str | None = None, build: str | None = None) -> InstallPlan:
        return make_install_plan(
            self.settings, self.spec, uv=self.uv, backend=backend, build=build, check_sources=True
        )

    # -- the install --------------------------------------------------------------
    def install(self, request: InstallRequest) -> InstallResult:
        """Plan, build (or resume), verify, switch in, then fetch the weights."""
        return self._locked(request, check_active=False)

    def repair(self, request: InstallRequest) -> InstallResult:
        """Redo only what is missing or broken: rebuild a broken environment, fetch
        missing weights, leave everything that works alone."""
        return self._locked(request, check_active=True)

    def _locked(self, request: InstallRequest, *, check_active: bool) -> InstallResult:
        steps = self._steps
        lock = InstallLock(self.paths.install_lock)
        steps.emit("lock", "starting")
        try:
            lock.acquire(
                wait=request.wait,
                cancel=self.cancel,
                on_wait=lambda busy: steps.emit(
                    "lock", f"{busy} Waiting for it to finish.", level="warning"
                ),
            )
        except GeoLibreError as exc:
            if not isinstance(exc, InstallBusyError):
                self._record_failure(exc)
            raise
        try:
            if request.bundle is None:
                return self._install(request, check_active=check_active)
            with bundled_install(self, request) as bundled:
                return self._install(
                    request,
                    check_active=False,
                    source=bundled.source,
                    plan=bundled.plan,
                    after_switch=bundled.after_switch,
                )
        except GeoLibreError as exc:
            self._record_failure(exc)
            raise
        finally:
            lock.release()

    def _record_failure(self, exc: GeoLibreError) -> None:
        """What the doctor and the app show as "the last install failed because ..."."""
        failure = getattr(exc, "failure", None)
        kind = failure.kind if failure is not None else (
            "cancelled" if isinstance(exc, InstallCancelledError) else "other"
        )  # fmt: skip
        record = {"at": time.time(), "outcome": "cancelled" if kind == "cancelled" else "failed",
                  "failure": {"kind": kind, "summary": exc.message, "hint": exc.hint}}  # fmt: skip
        with contextlib.suppress(OSError):
            write_json_atomic(self.paths.last_install, record)

    def _install(
        self,
        request: InstallRequest,
        *,
        check_active: bool,
        source: PackageSource | None = None,
        plan: InstallPlan | None = None,
        after_switch: AfterSwitch | None = None,
    ) -> InstallResult:
        steps = self._steps
        if plan is None:
            with steps.timed("plan"):
                steps.emit("plan", "checking this computer")
                plan = self.plan(backend=request.backend, build=request.build)
        source = source or IndexSource(self.settings)
        if not plan.ok:
            message = "The install cannot start: " + " ".join(plan.problems)
            if plan.source_failures:  # a source did not answer: nothing was downloaded
                first = plan.source_failures[0]
                raise ClassifiedInstallError(
                    InstallFailure(first.kind, message, f"{first.hint} {DRY_RUN_HINT}")
                )
            raise InstallError(message, hint=DRY_RUN_HINT)
        steps.emit("plan", plan.reason("torch"), extra={"plan": plan.to_dict()})
        for warning in plan.warnings:  # an unreachable Hub, a fallback taken: said up front
            steps.emit("plan", warning, level="warning")
        wanted = plan_hash(plan)
        active = active_environment(self.paths)
        current = active is not None and (
            active.record.get("plan_hash") == wanted or plan.keeps_existing
        )
        if current and check_active:
            assert active is not None
            with steps.timed("verify"):
                steps.emit("verify", f"checking the installed environment {active.name}")
                broken = self._broken(active)
            if broken:
                steps.emit("verify", f"{broken}; rebuilding it", level="warning")
                current = False
        if current and not request.force:
            assert active is not None
            outcome, env = "up-to-date", active
            steps.emit("verify", f"the model environment {active.name} is already installed")
            # A build that never switched in (a killed --force reinstall) is of no use now.
            collect_garbage(self.paths, keep=active.root)
        else:
            outcome, env = "installed", self._build_and_switch(plan, wanted, source)
        result = InstallResult(
            outcome=outcome,
            env=env.name,
            env_path=str(env.root),
            plan=plan.to_dict(),
            verify=env.verify,
            timings_s=steps.timings,
        )
        if request.weights:
            if after_switch is not None:
                after_switch(plan, env, result)  # an offline bundle's weights
            else:
                self._weights(request, plan, env, result)
        with contextlib.suppress(OSError):
            write_json_atomic(
                self.paths.last_install,
                {"at": time.time(), "outcome": outcome, "env": env.name,
                 "weights_error": result.weights_error, "weights_checked": request.weights},
            )  # fmt: skip
        steps.emit(
            "done",
            "The model backend is installed."
            if result.complete
            else f"The model environment is installed, but: {result.weights_error}",
            level="info" if result.complete else "warning",
            extra={"result": result.to_dict()},
        )
        result.timings_s = steps.timings
        return result

    def _broken(self, active: ActiveEnvironment) -> str | None:
        """Why the active environment no longer works, or None."""
        try:
            report = run_probe(active.python, self.spec.verify_imports)
        except ToolError as exc:
            return exc.message
        return " ".join(report.problems) if not report.ok else None

    def _weights(
        self,
        request: InstallRequest,
        plan: InstallPlan,
        env: ActiveEnvironment,
        result: InstallResult,
    ) -> None:
        steps = self._steps
        if request.token:
            store_token(self.paths, request.token)
        with steps.timed("weights"):
            steps.emit("weights", "checking the SAM 3 weights")
            try:
                if request.model and request.model != self.spec.weights.repo:
                    other = fetch_model(
                        self.settings, self.spec, request.model, token=request.token,
                        site_packages=env.site_packages, progress=self._steps.sink,
                        cancel=self.cancel, python=env.python,
                    )  # fmt: skip
                    result.weights = asdict(other)
                    return
                status = fetch_weights(
                    self.settings,
                    self.spec,
                    backend=plan.sam3_backend,
                    token=request.token,
                    site_packages=env.site_packages,
                    progress=self._steps.sink,
                    cancel=self.cancel,
                    checkpoint=request.checkpoint,
                    python=env.python,  # its huggingface_hub, as samgeo-api will use it
                )
                result.weights = status.to_dict()
            except WeightsError as exc:
                if self.cancel.cancelled:
                    raise
                result.weights_error = str(exc)

    # -- the bundle install's interface (bundle.install.InstallHost) ---------------
    @property
    def staging_dir(self) -> Path:
        """Where an offline bundle is unpacked while it is checked and installed."""
        return self.paths.cache / "bundle-staging"

    def emit(self, phase: str, message: str, **kwargs: Any) -> None:
        """A progress event on this install's stream."""
        self._steps.emit(phase, message, **kwargs)

    def timed(self, phase: str) -> contextlib.AbstractContextManager[None]:
        """Time a phase into the result's ``timings_s``."""
        return self._steps.timed(phase)

    # -- building -------------------------------------------------------------------
    def _build_and_switch(
        self, plan: InstallPlan, wanted: str, source: PackageSource
    ) -> ActiveEnvironment:
        root = staging_root(self.paths, wanted)
        ready = read_json(root / COMPLETE_MARKER)
        if ready and ready.get("plan_hash") == wanted:
            # Verified by an earlier run that was stopped before it could switch.
            self._steps.emit("switch", f"resuming: {root.name} was built and verified already")
            return self._switch(root, ready)
        journal = Journal(root, wanted)
        resumed = any(journal.done(step) or journal.interrupted(step) for step in BUILD_STEPS)
        stop_strays(root)
        if resumed:
            self._steps.emit("venv", f"resuming the build in {root.name}")
        try:
            report = self._builder().build(root, plan, journal, source)
        except InstallError as exc:
            failure = getattr(exc, "failure", None)
            if not resumed or self.cancel.cancelled or (failure and failure.kind in EXTERNAL):
                raise  # starting over cannot fix the network, the disk or a missing package
            # A resumed build that does not verify: start this one over, once.
            self._steps.emit(
                "venv", "the resumed build is broken; starting it over", level="warning"
            )
            shutil.rmtree(root, ignore_errors=True)
            journal = Journal(root, wanted)
            report = self._builder().build(root, plan, journal, source)
        record = {
            "name": root.name,
            "created_at": time.time(),
            "plan_hash": wanted,
            "spec_fingerprint": plan.spec_fingerprint,
            "spec_name": plan.spec_name,
            "build": plan.torch_build.name,
            "torch_index_url": redact_url(plan.torch_index_url),
            "python": plan.python.version if plan.python else None,
            "python_path": plan.python.path if plan.python else None,
            "sam3_backend": plan.sam3_backend,
            "server_script": self.spec.server_script,
            "site_packages": _site_packages(report),
            "verify": report.data,
            "cuda_working": report.cuda_working,
            "machine": plan.machine_summary,
        }
        # The doctor's fallback when its live check cannot finish in time.
        remember_probe(ActiveEnvironment(root=root, record=record), report, at=time.time())
        # The marker is the last thing written into the build: it means "complete".
        write_json_atomic(root / COMPLETE_MARKER, record)
        return self._switch(root, record)

    def _builder(self) -> EnvBuilder:
        return EnvBuilder(self.settings, self.spec, self.uv, self.cancel, self._steps)

    def _switch(self, root: Path, record: dict[str, Any]) -> ActiveEnvironment:
        steps = self._steps
        with steps.timed("switch"):
            write_json_atomic(
                self.paths.active_pointer, {"env": root.name, "switched_at": time.time()}
            )
            steps.emit("switch", f"switched to the new environment {root.name}")
            collect_garbage(self.paths, keep=root)
        return ActiveEnvironment(root=root, record=record)


def _site_packages(report: VerifyReport) -> str | None:
    samgeo_dir = report.data.get("samgeo_dir")
    return str(Path(samgeo_dir).parent) if samgeo_dir else None


def run_install(
    settings: EnvSettings,
    request: InstallRequest,
    *,
    progress: ProgressSink = discard,
    cancel: CancelToken | None = None,
) -> InstallResult:
    """The library entry point the CLI and the sidecar's install job share."""
    return Provisioner(settings, progress=progress, cancel=cancel).install(request)
