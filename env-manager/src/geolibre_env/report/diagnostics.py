"""The environment report behind `geolibre-ml doctor` and `GET /ml/diagnostics`.

Fast and without side effects: nothing is started, installed or downloaded.
The model environment is asked once (a quick probe with a timeout; the record
written at install time answers when it is slow). Every check ends in ok,
warning or failure, with one sentence on what to do. Everything that leaves
this module is redacted.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import psutil

from geolibre_env import __version__
from geolibre_env.backend.exit_causes import HINTS, ExitCause
from geolibre_env.backend.record import extra_backend_statuses, read_status
from geolibre_env.errors import GeoLibreError
from geolibre_env.install.lock import InstallLock
from geolibre_env.install.plan import InstallPlan, make_plan
from geolibre_env.install.probe_cache import probe_active
from geolibre_env.install.sources import format_sources
from geolibre_env.install.verify import VerifyReport
from geolibre_env.machine.detect import Machine, detect_machine
from geolibre_env.machine.nvidia import classify_nvidia_smi_failure, nvidia_smi_fix
from geolibre_env.machine.torch_build import choose_build
from geolibre_env.model_env import ActiveEnvironment, active_environment, read_json
from geolibre_env.net.trust import check_ca_bundle, insecure_settings
from geolibre_env.redact import redact, redact_url
from geolibre_env.report.ports_check import check_ports
from geolibre_env.report.sidecar import check_sidecar
from geolibre_env.report.types import Check, Report
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec, Sam3Implementation, load_spec
from geolibre_env.uv.runner import find_uv
from geolibre_env.weights.availability import planned_backend, weights_verdict

NETWORK_SETTINGS = (
    "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "http_proxy",
    "no_proxy", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS",
    "UV_OFFLINE", "UV_NO_INDEX", "HF_ENDPOINT", "HF_HUB_OFFLINE", "GEOLIBRE_ML_TORCH_INDEX_URL",
    "GEOLIBRE_ML_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "UV_INSECURE_HOST",
    "UV_ALLOW_INSECURE_HOST", "PIP_TRUSTED_HOST",
)  # fmt: skip


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def check_system(machine: Machine) -> Check:
    memory = machine.memory_total_bytes or 0
    detail = f"{machine.describe()}; Python {platform.python_version()} ({sys.executable})."
    low = memory and memory < 15 * 2**30 and not machine.gpus
    return Check(
        "system",
        "Computer",
        "warning" if low else "ok",
        detail,
        "SAM 3 on the CPU needs about 16 GB of memory; close other programs or use a "
        "computer with an NVIDIA GPU."
        if low
        else None,
        {"os": machine.os, "arch": machine.arch, "cpus": machine.cpu_count, "memory": memory},
    )


def check_gpu(machine: Machine, spec: ModelEnvSpec | None) -> Check:
    data = {"gpus": [g.to_dict() for g in machine.gpus], "driver": machine.driver_version}
    if machine.gpus and spec is not None:
        choice = choose_build(machine, spec)
        if not choice.build.is_cuda:
            # The driver is too old, or no torch build has kernels for this GPU.
            return Check(
                "gpu", "NVIDIA GPU", "failure",
                f"{machine.describe()}: {choice.reason}",
                "Update the NVIDIA driver (see the reason above), or use the transformers "
                "backend on the CPU.",
                data,
            )  # fmt: skip
    if machine.gpus:
        lines = []
        for gpu in machine.gpus:
            free = f", {gpu.memory_free_mib / 1024:.1f} GiB free" if gpu.memory_free_mib else ""
            total = f"{gpu.memory_total_mib / 1024:.1f} GiB" if gpu.memory_total_mib else "?"
            lines.append(
                f"{gpu.name} (compute capability {gpu.compute_capability or '?'}, {total}{free})"
            )
        return Check(
            "gpu",
            "NVIDIA GPU",
            "ok",
            "; ".join(lines) + f"; driver {machine.driver_version}.",
            data=data,
        )
    error = machine.nvidia_smi_error or ""
    if error and classify_nvidia_smi_failure(error) not in ("missing", "no_devices"):
        return Check(
            "gpu", "NVIDIA GPU", "failure", f"nvidia-smi failed: {error[:200]}",
            nvidia_smi_fix(error), data,
        )  # fmt: skip
    return Check(
        "gpu",
        "NVIDIA GPU",
        "warning",
        "No NVIDIA GPU was found, so SAM 3's meta backend cannot run here.",
        "Use the transformers backend (it runs on the CPU, expect minutes per image), or a "
        "computer with an NVIDIA GPU and driver.",
        data,
    )


def check_disk(plan: InstallPlan | None, machine: Machine) -> Check:
    data = {"disks": [asdict(d) for d in machine.disks]}
    if plan is None:
        lines = [f"{d.purpose}: {_gb(d.free_bytes)} free at {d.path}" for d in machine.disks]
        return Check("disk", "Free disk", "ok", "; ".join(lines) + ".", data=data)
    short = [fs for fs in plan.filesystems if fs.enough is False]
    lines = [
        f"{fs.path} ({', '.join(fs.purposes)}): {_gb(fs.free_bytes or 0)} free, "
        f"{_gb(fs.needed_bytes)} needed for a new install"
        for fs in plan.filesystems
    ]
    if short:
        return Check(
            "disk", "Free disk", "warning", "; ".join(lines) + ".",
            "Free some space before installing or repairing the model backend "
            "(an installed environment keeps working).", data,
        )  # fmt: skip
    return Check("disk", "Free disk", "ok", "; ".join(lines) + ".", data=data)


def check_model_env(
    settings: EnvSettings, spec: ModelEnvSpec, active: ActiveEnvironment | None, machine: Machine
) -> tuple[Check, VerifyReport | None]:
    if active is None:
        return Check(
            "model_env", "Model environment", "failure",
            "The model backend (samgeo-api with PyTorch) is not installed.",
            "Install it from the app, or run `geolibre-ml install`.",
        ), None  # fmt: skip
    outcome = probe_active(active)  # live, else the last good answer with its age
    report: VerifyReport | None = outcome.report
    source = outcome.note
    data = {"env": active.name, "path": str(active.root), "build": active.build, **report.data}
    torch = report.data.get("torch")
    if torch is None:
        return Check(
            "model_env", "Model environment", "failure",
            f"torch does not import in {active.name}: {'; '.join(report.problems)[:300]}",
            "Run `geolibre-ml repair`.", data,
        ), report  # fmt: skip
    cuda_build = bool(report.data.get("cuda_version"))
    samgeo = report.data.get("samgeo_version") or active.verify.get("imports", {}).get("samgeo")
    detail = (
        f"{active.name} ({source}): Python {report.data.get('python')}, torch {torch}, "
        f"{'CUDA ' + str(report.data.get('cuda_version')) if cuda_build else 'CPU build'}, "
        f"samgeo {samgeo}."
    )
    if cuda_build and machine.gpus and not report.cuda_working:
        return Check(
            "model_env", "Model environment", "failure",
            detail + " But CUDA is not usable: " + " ".join(report.problems),
            "Update the NVIDIA driver, or run `geolibre-ml install --force` so the planner "
            "picks a torch build that fits this GPU.", data,
        ), report  # fmt: skip
    if not cuda_build and machine.gpus:
        return Check(
            "model_env", "Model environment", "warning",
            detail + " This CPU build cannot use the NVIDIA GPU.",
            "Run `geolibre-ml install --force` to switch to a CUDA build.", data,
        ), report  # fmt: skip
    return Check("model_env", "Model environment", "ok", detail, data=data), report


def check_weights(
    settings: EnvSettings,
    spec: ModelEnvSpec,
    active: ActiveEnvironment | None,
    planned: Sam3Implementation | None = None,
) -> Check:
    """The weights of the SAM 3 implementation that will run: the installed environment's
    (its plan's choice), else the one a new install would choose (``planned``)."""
    backend = planned_backend(active, planned) or "meta"
    verdict = weights_verdict(settings, active, backend=backend, spec=spec)
    status = verdict.status
    data: dict[str, Any] = status.to_dict() if status is not None else {"backend": backend}
    if status is None:
        return Check(
            "weights", "SAM 3 weights", "failure", verdict.reason or "", verdict.hint, data
        )
    token = "a Hub token is configured" if status.token_configured else "no Hub token is configured"
    last = read_json(settings.paths.last_install) or {}
    # Only the last install of the environment in use speaks for its weights: after an
    # uninstall (or a newer install) its error is history.
    stale = active is None or last.get("env") != active.name
    if last.get("weights_error") and not stale:
        data["last_install_error"] = last["weights_error"]
    if status.present:
        where = "a local checkpoint" if status.route == "checkpoint" else spec.weights.repo
        return Check(
            "weights", "SAM 3 weights", "ok",
            f"Present for the {backend} implementation from {where} "
            f"({_gb(status.total_bytes)}); {token}.",
            data=data,
        )  # fmt: skip
    why = (
        f" The last install said: {_clause(last['weights_error'])}."
        if not stale and last.get("weights_error")
        else ""
    )
    return Check(
        "weights", "SAM 3 weights", "failure",
        f"{_clause(verdict.reason)}; {token}.{why}", verdict.hint, data,
    )  # fmt: skip


def _clause(text: object) -> str:
    """Text to sit inside a sentence: no trailing full stop (no "stopped., 24 s")."""
    return str(text).strip().rstrip(".")


def _uptime(snapshot: Mapping[str, Any], *, live: bool) -> float | None:
    """Seconds since the backend became ready. The file holds the figure as of its
    last write (0 at the ready transition): carry it forward to now."""
    uptime = snapshot.get("uptime_s")
    if not isinstance(uptime, int | float):
        return None
    written = snapshot.get("written_at")
    if not live and snapshot.get("state") in ("ready", "busy") and isinstance(written, int | float):
        uptime += max(0.0, time.time() - written)
    return uptime


def check_backend(settings: EnvSettings, live: Mapping[str, Any] | None) -> Check:
    snapshot = dict(live) if live is not None else read_status(settings.paths.supervisor_status)
    if snapshot is not None and live is None:
        sidecar_pid = int(snapshot.get("sidecar_pid") or 0)
        if not psutil.pid_exists(sidecar_pid):
            snapshot = {**snapshot, "state": "stopped", "cause": "no sidecar is running",
                        "pid": None, "port": None, "uptime_s": None}  # fmt: skip
    if not snapshot:
        return Check("backend", "Backend (samgeo-api)", "ok", "No sidecar has run it yet.")
    state = snapshot.get("state")
    last = snapshot.get("last_exit") or {}
    uptime = _uptime(snapshot, live=live is not None)
    snapshot["uptime_s"] = round(uptime, 1) if uptime is not None else None
    parts = [f"state {state}: {_clause(snapshot.get('cause'))}"]
    for key in ("pid", "port"):
        if snapshot.get(key) is not None:
            parts.append(f"{key} {snapshot[key]}")
    if uptime is not None:
        parts.append(f"up {uptime:.0f} s")
    if snapshot.get("restarts"):
        parts.append(f"restarts {snapshot['restarts']}")
    if last.get("cause") and last.get("cause") != ExitCause.STOPPED.value:
        parts.append(f"last exit: {_clause(last.get('summary'))}")
    if snapshot.get("device"):
        parts[0] = f"on GPU {snapshot['device']}, {parts[0]}"
    extras = extra_backend_statuses(settings.paths)  # one per GPU, for tiled jobs
    parts += [f"{e.get('name')} on GPU {e.get('device')}: {e.get('state')}" for e in extras]
    data = {k: snapshot.get(k) for k in ("state", "cause", "pid", "port", "uptime_s", "restarts",
                                         "last_exit", "log_tail", "device")}  # fmt: skip
    data["gpu_backends"] = [{k: e.get(k) for k in ("name", "device", "state", "cause")}
                            for e in extras]  # fmt: skip
    failed = state == "failed"
    hint = last.get("hint") or (HINTS[ExitCause.CRASHED] if failed else None)
    return Check(
        "backend", "Backend (samgeo-api)", "failure" if failed else "ok",
        redact("; ".join(parts) + "."), hint if failed else None, data,
    )  # fmt: skip


def check_network(settings: EnvSettings, plan: InstallPlan | None) -> Check:
    """Where installs download from (mirrors, proxy, trust), without credentials; a
    warning for settings we refuse to honour (TLS checks off) or cannot use."""
    shown = {
        key: redact_url(value) if "://" in value else redact(value)
        for key, value in settings.environ.items()
        if key in NETWORK_SETTINGS and value
    }
    sources = plan.sources if plan is not None else {}
    parts = format_sources(sources) if sources else []
    if not parts:
        parts = [", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "direct access"]
    data: dict[str, Any] = {"settings": shown, "sources": sources}
    detail = "; ".join(parts) + "."
    insecure = insecure_settings(settings.environ)
    if insecure:
        return Check(
            "network", "Proxy, mirrors and indexes", "warning",
            f"{', '.join(insecure)} would turn certificate checks off; geolibre-ml ignores "
            f"it and keeps verifying. {detail}",
            "Unset it; if a certificate check fails, set GEOLIBRE_ML_CA_BUNDLE to your "
            "organisation's root certificate (a PEM file).", data,
        )  # fmt: skip
    if settings.ca_bundle is not None:
        try:
            check_ca_bundle(settings.ca_bundle)
        except GeoLibreError as exc:
            return Check(
                "network", "Proxy, mirrors and indexes", "failure", exc.message, exc.hint, data
            )
    return Check("network", "Proxy, mirrors and indexes", "ok", detail, data=data)


def check_last_install(settings: EnvSettings, active: ActiveEnvironment | None) -> Check:
    """Why the last install failed, from ``last-install.json`` (kind, sentence, next step)."""
    last = read_json(settings.paths.last_install) or {}
    failure = last.get("failure") if isinstance(last.get("failure"), dict) else None
    if not last:
        return Check("install", "Last install", "ok", "No install has run yet.")
    if failure is None:
        return Check(
            "install", "Last install", "ok",
            f"The last install finished ({last.get('outcome')}, {last.get('env')}).",
        )  # fmt: skip
    kept = f" The environment {active.name} still works." if active is not None else ""
    return Check(
        "install", "Last install", "warning" if active is not None else "failure",
        f"The last install {last.get('outcome', 'failed')}: {failure.get('summary')}{kept}",
        failure.get("hint"),
        {"kind": failure.get("kind"), "at": last.get("at")},
    )  # fmt: skip


def check_tools(settings: EnvSettings) -> Check:
    try:
        uv = find_uv(settings)
    except GeoLibreError as exc:
        return Check("tools", "uv", "failure", exc.message, exc.hint)
    holder = InstallLock(settings.paths.install_lock).holder()
    running = holder and psutil.pid_exists(int(holder.get("pid") or 0))
    extra = f"; an install is running (pid {holder['pid']})" if running and holder else ""
    return Check(
        "tools", "uv and sidecar", "ok",
        f"uv {uv.version_text} at {uv.path}; geolibre-ml {__version__}{extra}.",
        data={"uv": uv.version_text, "uv_path": uv.path, "geolibre_ml": __version__},
    )  # fmt: skip


def run_diagnostics(
    settings: EnvSettings,
    *,
    live_backend: Mapping[str, Any] | None = None,
    sidecar: Mapping[str, Any] | None = None,
) -> Report:
    """All checks, in the order a person reads them."""
    started = time.monotonic()
    active = active_environment(settings.paths)
    known = None
    if active is not None and active.record.get("python_path"):
        from geolibre_env.machine.detect import PythonInstall

        known = (PythonInstall(active.record.get("python") or "", active.record["python_path"]),)
    machine = detect_machine(settings, pythons=known or ())
    spec: ModelEnvSpec | None = None
    plan: InstallPlan | None = None
    spec_problem: Check | None = None
    try:
        spec = load_spec(settings.spec_path)
        plan = make_plan(machine, spec, settings)  # for its disk figures
    except GeoLibreError as exc:
        spec_problem = Check("spec", "Model-environment spec", "failure", exc.message, exc.hint)
    checks = [check_system(machine), check_gpu(machine, spec), check_sidecar(sidecar)]
    if spec_problem is not None:
        checks.append(spec_problem)
    checks.append(check_disk(plan, machine))
    if spec is not None:
        checks.append(check_model_env(settings, spec, active, machine)[0])
        planned = plan.sam3_backend if plan is not None else None
        checks.append(check_weights(settings, spec, active, planned))
    checks.append(check_last_install(settings, active))
    this_sidecar = int(sidecar["pid"]) if sidecar and sidecar.get("pid") else None
    checks.append(check_backend(settings, live_backend))
    checks.append(check_ports(settings, sidecar_pid=this_sidecar))
    checks += [check_network(settings, plan), check_tools(settings)]
    report = Report(checks)
    report.seconds = time.monotonic() - started
    return report
