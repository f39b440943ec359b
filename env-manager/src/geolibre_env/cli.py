"""``geolibre-ml``: install, verify, repair, uninstall and inspect the model backend.

One error type is caught once here: its message goes to stderr, the
traceback only to the install log.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import sys
from pathlib import Path

from geolibre_env import __version__
from geolibre_env.cli_io import (
    JsonLines,
    cancel_when_parent_exits,
    configure_logging,
    install_signals,
    progress_sink,
    read_token,
    screen,
)
from geolibre_env.errors import GeoLibreError, InstallCancelledError
from geolibre_env.install.protocol import (
    EVENT_ERROR,
    EVENT_RESULT,
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    OPT_BACKEND,
    OPT_BUILD,
    OPT_CHECKPOINT,
    OPT_EVENTS,
    OPT_FORCE,
    OPT_FROM,
    OPT_MODEL,
    OPT_NO_WEIGHTS,
    OPT_PARENT_PID,
    OPT_TOKEN_STDIN,
    SAM3_IMPLEMENTATIONS,
)
from geolibre_env.progress import CancelToken
from geolibre_env.screen_text import fit, terminal_width
from geolibre_env.settings import EnvSettings

log = logging.getLogger("geolibre.cli")


def cmd_install(args: argparse.Namespace, settings: EnvSettings, *, repair: bool = False) -> int:
    from geolibre_env.install.provision import InstallRequest, Provisioner

    cancel = CancelToken()
    install_signals(cancel)
    if getattr(args, "parent_pid", None):
        cancel_when_parent_exits(args.parent_pid, cancel)
    sink, finish = progress_sink(args)
    provisioner = Provisioner(settings, progress=sink, cancel=cancel)
    bundle = getattr(args, "from_bundle", None)
    if getattr(args, "dry_run", False) and bundle is not None:
        return _describe_bundle(Path(bundle).expanduser(), as_json=args.json)
    if getattr(args, "dry_run", False):
        plan = provisioner.plan(backend=args.backend, build=args.build)
        print(json.dumps(plan.to_dict(), indent=2) if args.json else screen(plan.format_text()))
        return EXIT_OK if plan.ok else EXIT_ERROR
    model = getattr(args, "model", None)
    if model and model != provisioner.spec.weights.repo:
        from geolibre_env.weights.models import check_model

        check_model(provisioner.spec, model)  # before anything is built
    request = InstallRequest(
        model=model,
        backend=args.backend,
        build=getattr(args, "build", None),
        token=read_token(args, settings),
        checkpoint=Path(args.checkpoint).expanduser() if args.checkpoint else None,
        wait=args.wait,
        weights=not args.no_weights,
        force=getattr(args, "force", False),
        bundle=Path(bundle).expanduser() if bundle else None,
    )
    try:
        result = provisioner.repair(request) if repair else provisioner.install(request)
    finally:
        finish()
    if args.events:
        JsonLines(sys.stdout).write({"event": EVENT_RESULT, **result.to_dict()})
    elif args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        what = "already installed and verified" if result.outcome == "up-to-date" else "installed"
        print(f"Model environment {result.env}: {what}.")
        if not request.weights:
            print("SAM 3 weights: not checked (--no-weights).")
        elif result.complete:
            print(f"{model or 'SAM 3'} weights: ready.")
        else:
            print(f"SAM 3 weights: {result.weights_error}")
        times = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings_s.items())
        print(f"Time per phase: {times}.")
    return EXIT_OK if result.complete else EXIT_PARTIAL


def _describe_bundle(archive: Path, *, as_json: bool) -> int:
    """``install --from BUNDLE --dry-run``: what the bundle is for (its manifest only)."""
    from geolibre_env.install.bundle.archive import read_manifest
    from geolibre_env.install.bundle.target import describe_target

    manifest = read_manifest(archive)
    data = {k: manifest.data.get(k) for k in ("target", "spec", "created_by", "plan")}
    data["files"], data["bytes"] = len(manifest.files), manifest.total_bytes
    if as_json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    spec = manifest.data.get("spec") or {}
    print(f"{archive.name}: for {describe_target(manifest.target)}; {len(manifest.files)} "
          f"files, {manifest.total_bytes / 1e6:.1f} MB; made by {data['created_by']} for "
          f"{spec.get('name')} (spec {spec.get('fingerprint')}).")  # fmt: skip
    print("`geolibre-ml install --from` checks every file before it installs anything.")
    return EXIT_OK


def cmd_bundle_export(args: argparse.Namespace, settings: EnvSettings) -> int:
    from geolibre_env.install.bundle.export import BundleExporter
    from geolibre_env.install.bundle.target import ExportTarget, describe_target
    from geolibre_env.spec import load_spec
    from geolibre_env.uv.runner import find_uv

    cancel = CancelToken()
    install_signals(cancel)
    sink, finish = progress_sink(args)
    target = ExportTarget(
        os=args.os, arch=args.arch, python=args.python, build=args.build, backend=args.backend
    )
    exporter = BundleExporter(
        settings, load_spec(settings.spec_path), find_uv(settings), progress=sink, cancel=cancel
    )
    try:
        result = exporter.export(
            target,
            Path(args.output).expanduser() if args.output else None,
            token=read_token(args, settings),
        )
    finally:
        finish()
    if args.events:
        JsonLines(sys.stdout).write({"event": EVENT_RESULT, **result.to_dict()})
    elif args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        mb = result.size / 1e6
        size = f"{mb / 1e3:.2f} GB" if mb >= 100 else f"{mb:.1f} MB"
        print(f"Wrote {result.path} ({size}, {result.files} files) for "
              f"{describe_target(result.target)}.")  # fmt: skip
        print(f"sha256: {result.sha256}")
        print(f"On the offline computer: geolibre-ml install --from {Path(result.path).name}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace, settings: EnvSettings) -> int:
    from geolibre_env.install.verify import run_probe
    from geolibre_env.model_env import active_environment
    from geolibre_env.spec import load_spec

    active = active_environment(settings.paths)
    if active is None:
        raise GeoLibreError(
            "The model backend is not installed.", hint="Run `geolibre-ml install`."
        )
    report = run_probe(active.python, load_spec(settings.spec_path).verify_imports)
    if args.json:
        print(json.dumps({"env": active.name, "ok": report.ok, **report.data}, indent=2))
    else:
        print(f"{active.name}: {report.summary()}")
        for problem in report.problems:
            print(f"  problem: {problem}")
    return EXIT_OK if report.ok else EXIT_ERROR


def cmd_uninstall(args: argparse.Namespace, settings: EnvSettings) -> int:
    from geolibre_env.install.staging import processes_using
    from geolibre_env.install.uninstall import UninstallReport, targets, uninstall

    paths = settings.paths
    if not targets(paths, weights=args.weights, cache=args.cache):
        report = UninstallReport()
        print(json.dumps(report.to_dict(), indent=2) if args.json else report.format_text())
        return EXIT_OK
    # Checked before asking, and before anything is removed: a refusal changes nothing.
    users = [f"{p.name()} (pid {p.pid})" for p in processes_using(paths.envs_dir)]
    if not users and not args.yes:
        if not sys.stdin.isatty():
            print(
                "geolibre-ml uninstall: there is no terminal to confirm in, so nothing was "
                "removed. Pass --yes to remove without asking.",
                file=sys.stderr,
            )
            return EXIT_USAGE
        extra = " and the weights" if args.weights else ""
        answer = input(f"Remove the model environment{extra}? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("Nothing removed.")
            return EXIT_OK
    report = uninstall(paths, weights=args.weights, cache=args.cache, in_use=users)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format_text())
    return EXIT_OK if not report.kept else EXIT_ERROR


def cmd_status(args: argparse.Namespace, settings: EnvSettings) -> int:
    from geolibre_env.report.state import collect_status, format_status

    data = collect_status(settings)
    print(json.dumps(data, indent=2, default=str) if args.json else screen(format_status(data)))
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace, settings: EnvSettings) -> int:
    from geolibre_env.report.diagnostics import run_diagnostics
    from geolibre_env.report.doctor_output import print_report, write_bundle

    report = run_diagnostics(settings)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print_report(report, sys.stdout)
    if args.bundle is not None:
        dest = write_bundle(settings, report, Path(args.bundle) if args.bundle else None)
        print(f"Wrote {dest}: attach it to your bug report.", file=sys.stderr)
    return EXIT_ERROR if report.verdict == "failure" else EXIT_OK


def _add_install_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(OPT_BACKEND, choices=SAM3_IMPLEMENTATIONS, help="SAM 3 backend")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token-file", help="read the Hugging Face token from this file")
    token.add_argument(OPT_TOKEN_STDIN, action="store_true", help="read the token from stdin")
    token.add_argument("--ask-token", action="store_true", help="prompt for it (hidden input)")
    parser.add_argument(OPT_CHECKPOINT, help="use this local sam3.pt instead of downloading")
    parser.add_argument(OPT_NO_WEIGHTS, action="store_true", help="skip the weights step")
    parser.add_argument(OPT_MODEL, help="fetch this model's weights instead (e.g. facebook/sam3.1)")
    parser.add_argument("--wait", action="store_true", help="wait for another install to end")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(OPT_EVENTS, action="store_true", help="progress as JSON lines on stdout")
    parser.add_argument(OPT_PARENT_PID, type=int, help="cancel cleanly if this process exits")


def build_parser() -> argparse.ArgumentParser:
    # The docstring's first line, without its reStructuredText quotes (``x``).
    summary = __doc__.splitlines()[0].replace("``", "")
    parser = argparse.ArgumentParser(prog="geolibre-ml", description=summary)
    parser.add_argument("--version", action="version", version=f"geolibre-ml {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    install = sub.add_parser("install", help="install the model backend (or show the plan)")
    _add_install_options(install)
    install.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    install.add_argument(OPT_BUILD, help="force a torch build by name (e.g. cpu, cu126)")
    install.add_argument(OPT_FORCE, action="store_true", help="rebuild even if up to date")
    install.add_argument(
        OPT_FROM,
        dest="from_bundle",
        metavar="BUNDLE",
        help="install from an offline bundle (made by `geolibre-ml bundle export`); no network",
    )
    install.set_defaults(handler=cmd_install)

    bundle = sub.add_parser("bundle", help="offline bundles for computers without internet")
    bundle_sub = bundle.add_subparsers(dest="bundle_command", required=True)
    export = bundle_sub.add_parser(
        "export", help="write one archive with everything an offline install needs"
    )
    export.add_argument("--output", "-o", help="the archive to write (default: a name in .)")
    export.add_argument("--os", choices=["linux", "windows", "macos"], help="target OS")
    export.add_argument("--arch", choices=["x86_64", "arm64"], help="target CPU")
    export.add_argument("--python", help="target Python (3.11 or 3.12)")
    export.add_argument("--build", help="torch build for the target (cpu, cu126, cu130, ...)")
    export.add_argument(OPT_BACKEND, choices=SAM3_IMPLEMENTATIONS, help="SAM 3 backend")
    token = export.add_mutually_exclusive_group()
    token.add_argument("--token-file", help="read the Hugging Face token from this file")
    token.add_argument(OPT_TOKEN_STDIN, action="store_true", help="read the token from stdin")
    token.add_argument("--ask-token", action="store_true", help="prompt for it (hidden input)")
    export.add_argument("--json", action="store_true", help="print the result as JSON")
    export.add_argument("--events", action="store_true", help="progress as JSON lines")
    export.set_defaults(handler=cmd_bundle_export)

    repair = sub.add_parser("repair", help="redo only what is missing or broken")
    _add_install_options(repair)
    repair.set_defaults(handler=lambda a, s: cmd_install(a, s, repair=True))

    verify = sub.add_parser("verify", help="check the installed environment")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(handler=cmd_verify)

    uninstall = sub.add_parser("uninstall", help="remove the model environment")
    uninstall.add_argument("--weights", action="store_true", help="also remove the weights")
    uninstall.add_argument("--cache", action="store_true", help="also remove uv's package cache")
    uninstall.add_argument("--yes", action="store_true", help="do not ask")
    uninstall.add_argument("--json", action="store_true")
    uninstall.set_defaults(handler=cmd_uninstall)

    doctor = sub.add_parser("doctor", help="check everything segmentation needs, and say why not")
    doctor.add_argument("--json", action="store_true", help="the report as JSON (for the app)")
    doctor.add_argument(
        "--bundle",
        nargs="?",
        const="",
        metavar="PATH",
        help="also write a zip for a bug report (report, logs, install journal; redacted)",
    )
    doctor.set_defaults(handler=cmd_doctor)

    status = sub.add_parser("status", help="installed environment, weights and backend state")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = EnvSettings.from_environ()
        configure_logging(settings, args.verbose)
        code = args.handler(args, settings)
    except InstallCancelledError as exc:
        _report_error(args, exc)
        code = EXIT_CANCELLED
    except GeoLibreError as exc:
        log.debug("command failed", exc_info=True)
        _report_error(args, exc)
        code = EXIT_ERROR
    except KeyboardInterrupt:
        print("\ngeolibre-ml: interrupted.", file=sys.stderr)
        code = EXIT_CANCELLED
    sys.exit(code)


def _report_error(args: argparse.Namespace, exc: GeoLibreError) -> None:
    if getattr(args, "events", False):
        JsonLines(sys.stdout).write(
            {
                "event": EVENT_ERROR,
                "detail": exc.message,
                "hint": exc.hint,
                "type": type(exc).__name__,
            }
        )
    text = f"geolibre-ml: {exc.message}" + (f"\n  {exc.hint}" if exc.hint else "")
    print(fit(text, terminal_width(sys.stderr)), file=sys.stderr)
