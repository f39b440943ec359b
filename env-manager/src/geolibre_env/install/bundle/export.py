"""``geolibre-ml bundle export``: everything an offline computer's install needs, in one file.

The wheels are chosen by uv's own resolver for the *target* platform (``uv pip
compile --python-platform ... --format pylock.toml``), in the two steps the
install takes (torch from its index, then the packages with the pinned
constraints and torch held at that build), so the offline install finds
exactly what it asks for. The lock files give each wheel's URL, size and
sha256; our HTTP client (the proxy, the OS trust store, the extra CA) fetches
and checks them. uv has no ``pip download``, and pip is not in our
environment: measured on the test index, a throwaway venv with pip costs
4.6 s before the first download, the two compiles 0.24 s together, and pip's
own settings (``pip.conf``) would have leaked into the choice.

The weights come from the Hub cache (fetched first, resumably, if missing).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from geolibre_env import __version__
from geolibre_env.errors import InstallCancelledError, InstallError, ToolError
from geolibre_env.install.bundle.archive import FORMAT, FORMAT_VERSION, file_digest, write_bundle
from geolibre_env.install.bundle.target import (
    UV_PLATFORMS,
    ExportTarget,
    target_plan,
)
from geolibre_env.install.bundle.weights import cached_weights
from geolibre_env.install.failures import ClassifiedInstallError, classify_install_failure
from geolibre_env.install.plan import InstallPlan
from geolibre_env.install.sources import IndexSource, netloc
from geolibre_env.net.http_client import make_client, transport_failure
from geolibre_env.progress import CancelToken, ProgressEvent, ProgressSink, discard
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec
from geolibre_env.uv.runner import UvTool, uv_environment
from geolibre_env.weights.sam3 import fetch_weights, vocab_path

COMPILE_TIMEOUT_S = 600.0
DOWNLOAD_BLOCK_BYTES = 1 << 20
PROGRESS_EVERY_S = 0.2
HUB_PACKAGES = ("huggingface-hub", "hf-xet")


@dataclass
class ExportResult:
    path: str
    sha256: str
    size: int
    files: int
    target: dict[str, Any]
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__}


def hub_launcher(uv: UvTool, spec: ModelEnvSpec) -> list[str]:
    """``uv run`` with the model environment's pinned huggingface_hub and hf-xet, for
    fetching the weights on a computer that has no model environment."""
    pins: list[str] = []
    if spec.constraints_path is not None and spec.constraints_path.is_file():
        for line in spec.constraints_path.read_text(encoding="utf-8").splitlines():
            name = line.split("==")[0].strip().lower().replace("_", "-")
            if name in HUB_PACKAGES and "==" in line:
                pins += ["--with", line.split("#")[0].strip()]
    pins = pins or [arg for name in HUB_PACKAGES for arg in ("--with", name)]
    return uv.command("run", "--no-project", "--quiet", *pins, "python")


@dataclass(frozen=True)
class LockedWheel:
    name: str
    version: str
    url: str
    sha256: str | None
    size: int | None

    @property
    def filename(self) -> str:
        return unquote(urlsplit(self.url).path.rsplit("/", 1)[-1])


class BundleExporter:
    """Runs one export; progress events use the install's shape (phase, bytes)."""

    def __init__(
        self,
        settings: EnvSettings,
        spec: ModelEnvSpec,
        uv: UvTool,
        *,
        progress: ProgressSink = discard,
        cancel: CancelToken | None = None,
    ) -> None:
        self.settings, self.spec, self.uv = settings, spec, uv
        self.sink, self.cancel = progress, cancel or CancelToken()
        self.timings: dict[str, float] = {}

    def _emit(self, phase: str, message: str, **kwargs: Any) -> None:
        self.sink(ProgressEvent(phase, message, **kwargs))

    def _timed(self, phase: str, started: float) -> None:
        self.timings[phase] = round(time.monotonic() - started, 3)

    def export(
        self, target: ExportTarget, output: Path | None, *, token: str | None = None
    ) -> ExportResult:
        started = time.monotonic()
        plan, machine = target_plan(self.settings, self.spec, self.uv, target)
        assert plan.python is not None
        python = ".".join(plan.python.version.split(".")[:2])
        platform = UV_PLATFORMS[(machine.os, machine.arch)]
        names = (machine.os, machine.arch, f"py{python}", plan.torch_build.name, plan.sam3_backend)
        output = (output or Path.cwd() / f"geolibre-ml-bundle-{'-'.join(names)}.tar").absolute()
        output.parent.mkdir(parents=True, exist_ok=True)
        work = output.parent / f".{output.name}.work"
        shutil.rmtree(work, ignore_errors=True)
        (work / "wheels").mkdir(parents=True)
        self._timed("plan", started)
        try:
            wheels = self._wheels(plan, work, platform, python)
            weights, vocab = self._weights(plan, work, token)
            target_info = {
                "os": machine.os, "arch": machine.arch, "python": python,
                "build": plan.torch_build.name, "backend": plan.sam3_backend,
                "platform": platform,
            }  # fmt: skip
            members = [(f"wheels/{p.name}", p) for p in wheels]
            members += [(f"weights/{f.name}", f.source) for f in weights.files]
            if vocab is not None:
                members.append((f"vocab/{vocab.name}", vocab))
            started = time.monotonic()
            files = {}
            for name, path in members:
                digest, size = file_digest(path)
                files[name] = {"sha256": digest, "size": size}
            manifest = {
                "format": FORMAT, "version": FORMAT_VERSION, "created_at": time.time(),
                "created_by": f"geolibre-ml {__version__}",
                "spec": {"name": self.spec.name, "fingerprint": self.spec.fingerprint,
                         "revision": self.spec.revision},
                "target": target_info, "plan": plan.to_dict(),
                "weights": weights.to_dict(),
                "vocab": f"vocab/{vocab.name}" if vocab is not None else None,
                "files": files,
            }  # fmt: skip
            self._emit("archive", f"writing {output.name}")
            digest, size = write_bundle(
                output, manifest, members, progress=self._bytes("archive", output.name)
            )
            self._timed("archive", started)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._emit("done", f"wrote {output} ({size / 1e6:.1f} MB)")
        return ExportResult(str(output), digest, size, len(members), target_info, self.timings)

    # -- the packages ---------------------------------------------------------------
    def _wheels(self, plan: InstallPlan, work: Path, platform: str, python: str) -> list[Path]:
        started = time.monotonic()
        wheels_dir = work / "wheels"
        torch_in = work / "torch.in"
        torch_in.write_text("\n".join(plan.torch_requirements) + "\n", encoding="utf-8")
        self._emit("resolve", f"choosing torch wheels for {platform}, Python {python}")
        step1 = self._compile(
            "torch", plan, work, [str(torch_in), "--index-url", plan.torch_index_url],
            platform, python,
        )  # fmt: skip
        got = self._download(step1, wheels_dir, plan)
        # Held at the exact build just chosen: the local version (+cpu) only the torch
        # index has, as the installed torch holds it during the install's second step.
        pins = work / "torch-pins.txt"
        held = [f"{w.name}=={w.version}" for w in step1 if w.name in ("torch", "torchvision")]
        pins.write_text("\n".join(held) + "\n", encoding="utf-8")
        requirements = work / "requirements.in"
        requirements.write_text("\n".join(plan.requirements) + "\n", encoding="utf-8")
        args = [str(requirements), "-c", str(pins), "--find-links", str(wheels_dir)]
        if plan.constraints_path is not None:
            args += ["-c", str(plan.constraints_path)]
        self._emit("resolve", "choosing the other packages' wheels")
        step2 = self._compile("packages", plan, work, args, platform, python)
        got += self._download(step2, wheels_dir, plan)
        self._timed("wheels", started)
        return sorted(set(got))

    def _compile(
        self,
        step: str,
        plan: InstallPlan,
        work: Path,
        args: list[str],
        platform: str,
        python: str,
    ) -> list[LockedWheel]:
        lock = work / f"pylock.{step}.toml"
        # --python: an interpreter uv need not search for (0.9 s through pyenv shims; it
        # only resolves, for --python-version); --no-build: wheels only, as offline needs.
        argv = ["pip", "compile", *args, "--python-platform", platform, "--python-version",
                python, "--python", sys.executable, "--no-build", "--format", "pylock.toml",
                "-o", str(lock), "--quiet"]  # fmt: skip
        env = uv_environment(self.settings, uv=self.uv)
        try:
            # cwd: a plain folder, so no project's uv settings are picked up.
            self.uv.run(argv, env=env, timeout_s=COMPILE_TIMEOUT_S, cwd=work)
        except ToolError as exc:
            context = IndexSource(self.settings).failure_context(
                "torch" if step == "torch" else "packages", plan.torch_index_url
            )
            raise ClassifiedInstallError(
                classify_install_failure(exc.output_tail, context)
            ) from None
        return _locked_wheels(lock)

    def _download(self, wheels: list[LockedWheel], folder: Path, plan: InstallPlan) -> list[Path]:
        got: list[Path] = []
        todo = [w for w in wheels if not _present(folder / w.filename, w)]
        total = sum(w.size or 0 for w in todo)
        done = 0
        auth = _index_credentials(self.settings, plan)
        with make_client(self.settings, timeout_s=120.0) as client:
            for wheel in wheels:
                dest = folder / wheel.filename
                if wheel in todo:
                    self._emit("download", f"downloading {wheel.filename}", done=done,
                               total=total or None, unit="bytes")  # fmt: skip
                    self._fetch(client, wheel, dest, auth)
                    done += dest.stat().st_size
                got.append(dest)
        return got

    def _fetch(
        self, client: httpx.Client, wheel: LockedWheel, dest: Path, auth: dict[str, httpx.Auth]
    ) -> None:
        if wheel.url.startswith("file://"):
            shutil.copyfile(Path(unquote(urlsplit(wheel.url).path)), dest)
        else:
            partial = dest.with_name(dest.name + ".partial")
            digest = hashlib.sha256()
            try:
                with client.stream(
                    "GET", wheel.url, follow_redirects=True, auth=auth.get(netloc(wheel.url))
                ) as response:
                    if response.status_code >= 400:
                        raise InstallError(
                            f"{netloc(wheel.url)} answered HTTP {response.status_code} for "
                            f"{wheel.filename}.",
                            hint="Check the index settings and the proxy, then export again.",
                        )
                    with partial.open("wb") as handle:
                        for chunk in response.iter_bytes(DOWNLOAD_BLOCK_BYTES):
                            if self.cancel.cancelled:
                                raise InstallCancelledError("The export was cancelled.")
                            digest.update(chunk)
                            handle.write(chunk)
            except httpx.TransportError as exc:
                partial.unlink(missing_ok=True)
                proxy = self.settings.proxies.for_url(wheel.url)
                failure = transport_failure(exc, proxy=proxy)
                raise InstallError(
                    f"Could not download {wheel.filename} from {netloc(wheel.url)}: "
                    f"{failure.reason}.",
                    hint="Check the network, HTTPS_PROXY and GEOLIBRE_ML_CA_BUNDLE, then export "
                    "again.",
                ) from None
            if wheel.sha256 and digest.hexdigest() != wheel.sha256:
                partial.unlink(missing_ok=True)
                raise ClassifiedInstallError(
                    classify_install_failure(
                        f"Hash mismatch for `{wheel.name}=={wheel.version}`",
                        IndexSource(self.settings).failure_context("packages", wheel.url),
                    )
                )
            partial.replace(dest)
        if wheel.sha256 and file_digest(dest)[0] != wheel.sha256:
            dest.unlink(missing_ok=True)
            raise InstallError(f"{wheel.filename} does not match its checksum.")

    # -- the weights --------------------------------------------------------------
    # No model environment here: uv runs the runner with the spec's huggingface_hub.
    def _weights(self, plan: InstallPlan, work: Path, token: str | None) -> tuple[Any, Path | None]:
        started = time.monotonic()
        # From the Hub even where this computer uses a local checkpoint: the bundle
        # carries what the target's backend loads.
        settings = replace(self.settings, checkpoint_path=None)
        site = work / "site-packages"
        fetch_weights(
            settings, self.spec, backend=plan.sam3_backend, token=token, site_packages=site,
            progress=self.sink, cancel=self.cancel, python=hub_launcher(self.uv, self.spec),
            python_env=uv_environment(self.settings, uv=self.uv),
        )  # fmt: skip
        weights = cached_weights(settings, self.spec, plan.sam3_backend)
        vocab = vocab_path(self.spec, site)
        self._timed("weights", started)
        return weights, vocab if vocab is not None and vocab.is_file() else None

    def _bytes(self, phase: str, what: str):  # type: ignore[no-untyped-def]
        last = [0.0]

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_S or done == total:
                last[0] = now
                self._emit(phase, what, done=done, total=total, unit="bytes")

        return report


def _present(path: Path, wheel: LockedWheel) -> bool:
    return path.is_file() and (wheel.size is None or path.stat().st_size == wheel.size)


def _locked_wheels(lock: Path) -> list[LockedWheel]:
    """One wheel per package from uv's pylock.toml (it lists the target's best first;
    a file:// entry is a wheel we already have)."""
    data = tomllib.loads(lock.read_text(encoding="utf-8"))
    found = []
    for package in data.get("packages", []):
        entries = package.get("wheels") or []
        if not entries:
            raise InstallError(
                f"{package.get('name')} {package.get('version')} has no wheel for the target "
                f"computer (only source code), so it cannot go into an offline bundle.",
                hint="Choose another target (--os/--arch/--python) or ask for a wheel on the "
                "mirror.",
            )
        local = [e for e in entries if str(e.get("url", "")).startswith("file://")]
        entry = (local or entries)[0]
        found.append(
            LockedWheel(
                name=str(package["name"]),
                version=str(package["version"]),
                url=str(entry.get("url") or entry.get("path")),
                sha256=(entry.get("hashes") or {}).get("sha256"),
                size=entry.get("size"),
            )
        )
    return found


def _index_credentials(settings: EnvSettings, plan: InstallPlan) -> dict[str, httpx.Auth]:
    """Basic auth for files on a mirror whose index URL carries a user name: uv leaves
    credentials out of the lock file, the mirror still wants them for the files."""
    urls = [plan.torch_index_url, *(settings.environ.get(k, "") for k in (
        "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL"))]  # fmt: skip
    found: dict[str, httpx.Auth] = {}
    for url in filter(None, urls):
        parts = urlsplit(url)
        if parts.username:
            user, password = unquote(parts.username), unquote(parts.password or "")
            found[netloc(url)] = httpx.BasicAuth(user, password)
    return found
