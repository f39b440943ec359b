"""The build of one model environment, step by step: venv, torch, packages,
verify. Each step is recorded in the build folder's journal, so a re-run skips
what is done and reinstalls what a kill interrupted. Deciding whether to build,
resume or switch is :mod:`geolibre_env.install.provision`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geolibre_env.errors import InstallError, ToolError
from geolibre_env.install.failures import ClassifiedInstallError, classify_install_failure
from geolibre_env.install.journal import Journal
from geolibre_env.install.plan import InstallPlan
from geolibre_env.install.sources import PackageSource, Step, torch_step_environment
from geolibre_env.install.verify import VerifyReport, run_probe
from geolibre_env.model_env import env_python, venv_dir
from geolibre_env.progress import CancelToken, ProgressEvent, ProgressSink
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec
from geolibre_env.uv.progress import UvProgress
from geolibre_env.uv.runner import UvTool, stream_uv, uv_environment

BUILD_STEPS = ("venv", "torch", "packages", "verify")
UV_STEP_TIMEOUT_S = 4 * 3600.0  # 7 GB over a slow line; cancel is the user's stop button
INSTALL_DIR = ".geolibre-install"


class Steps:
    """Progress events plus per-phase timings."""

    def __init__(self, sink: ProgressSink) -> None:
        self.sink = sink
        self.timings: dict[str, float] = {}

    def emit(self, phase: str, message: str, **kwargs: Any) -> None:
        self.sink(ProgressEvent(phase, message, **kwargs))

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings[phase] = round(
                self.timings.get(phase, 0.0) + time.monotonic() - started, 3
            )


@dataclass(frozen=True)
class EnvBuilder:
    """Runs the build steps into one folder with one uv, reporting on ``steps``."""

    settings: EnvSettings
    spec: ModelEnvSpec
    uv: UvTool
    cancel: CancelToken
    steps: Steps

    def build(
        self, root: Path, plan: InstallPlan, journal: Journal, source: PackageSource
    ) -> VerifyReport:
        """Run the steps the journal does not mark done, then verify; the report."""
        steps = self.steps
        assert plan.python is not None
        env = source.environment(uv_environment(self.settings, uv=self.uv))
        if not journal.done("venv"):
            with steps.timed("venv"):
                steps.emit("venv", f"creating a Python {plan.python.version} environment")
                journal.start("venv")
                target = venv_dir(root)
                shutil.rmtree(target, ignore_errors=True)  # a venv half-made by a killed run
                args = ["venv", "--python", plan.python.path, "--no-project", str(target)]
                self._uv_step("venv", args, env, source, plan)
                journal.finish("venv")
        python = str(env_python(root))
        install_dir = root / INSTALL_DIR
        install_dir.mkdir(parents=True, exist_ok=True)
        if not journal.done("torch"):
            with steps.timed("torch"):
                build = plan.torch_build
                steps.emit("torch", f"installing {plan.torch_label or build.name}")
                reinstall = ["--reinstall"] if journal.interrupted("torch") else []
                journal.start("torch")
                where = source.uv_args("torch", plan.torch_index_url)
                args = ["pip", "install", "-v", "--python", python, *reinstall, *where,
                        *plan.torch_requirements]  # fmt: skip
                self._uv_step("torch", args, torch_step_environment(env), source, plan)
                journal.finish("torch")
        if not journal.done("packages"):
            with steps.timed("packages"):
                steps.emit("packages", "installing " + ", ".join(plan.requirements))
                requirements = install_dir / "requirements.txt"
                requirements.write_text("\n".join(plan.requirements) + "\n", encoding="utf-8")
                pins = install_dir / "torch-pins.txt"
                pins.write_text("\n".join(plan.torch_requirements) + "\n", encoding="utf-8")
                constraints = ["-c", str(pins)]
                if plan.constraints_path is not None:
                    constraints += ["-c", str(plan.constraints_path)]
                reinstall = ["--reinstall"] if journal.interrupted("packages") else []
                journal.start("packages")
                where = source.uv_args("packages", plan.torch_index_url)
                args = ["pip", "install", "-v", "--python", python, *reinstall, *where,
                        "-r", str(requirements), *constraints]  # fmt: skip
                self._uv_step("packages", args, env, source, plan)
                journal.finish("packages")
        with steps.timed("verify"):
            steps.emit("verify", "checking that torch and samgeo import")
            journal.start("verify")
            try:
                report = run_probe(env_python(root), self.spec.verify_imports)
            except ToolError as exc:
                raise InstallError(
                    f"The new environment does not work: {exc.message}",
                    hint="Run the install again; if it keeps failing, run "
                    "`geolibre-ml doctor --bundle`.",
                ) from None
            if not report.ok:
                journal.forget("verify")
                raise InstallError(
                    "The new environment does not work: " + " ".join(report.problems),
                    hint="Run the install again (it rebuilds what is broken); if it keeps "
                    "failing, attach `geolibre-ml doctor --bundle` to a bug report.",
                )
            if plan.gpu_ready and not report.cuda_working:
                problems = report.problems or ["CUDA is not usable from the new environment."]
                steps.emit("verify", " ".join(problems), level="warning")
            journal.finish("verify", summary=report.summary())
        steps.emit("verify", report.summary())
        return report

    def _uv_step(
        self,
        phase: str,
        args: list[str],
        env: dict[str, str],
        source: PackageSource,
        plan: InstallPlan,
    ) -> None:
        cache = Path(
            env.get("UV_CACHE_DIR") or self.settings.paths.uv_cache
        )  # where uv really caches
        tracker = UvProgress(phase, self.steps.sink, cache_dir=cache)
        try:
            stream_uv(
                self.uv,
                args,
                env=env,
                on_line=tracker.line,
                on_tick=tracker.tick,
                cancel=self.cancel,
                timeout_s=UV_STEP_TIMEOUT_S,
            )
        except ToolError as exc:
            step: Step = "torch" if phase == "torch" else "packages"
            context = source.failure_context(step, plan.torch_index_url)
            answered = tuple(a.host for a in plan.source_checks if a.answered)
            context = dataclasses.replace(context, answered=answered)
            raise ClassifiedInstallError(
                classify_install_failure(exc.output_tail, context)
            ) from None
