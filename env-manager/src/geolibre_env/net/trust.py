"""Whom downloads trust: the operating system's store, plus an extra CA if given.

Verification is never turned off here, and no setting turns it off: uv's
"insecure host" settings are dropped (with a warning) before uv runs.

- httpx (weights, bundle export): ``truststore`` verifies with the OS (Windows
  CryptoAPI, macOS Security framework, OpenSSL's store on Linux), so a
  corporate root installed by IT just works; ``GEOLIBRE_ML_CA_BUNDLE`` is
  loaded on top.
- uv: ``UV_SYSTEM_CERTS=1`` (``UV_NATIVE_TLS=1`` before uv 0.11) makes it use
  the OS store instead of its bundled Mozilla roots. Measured with uv 0.13.9
  on Linux: ``SSL_CERT_FILE`` *replaces* the roots uv trusts (with or without
  system certificates: pypi.org then fails), so an extra CA is given to uv as
  one combined bundle - the roots it would otherwise use plus the extra CA -
  written under the cache folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
from collections.abc import Mapping
from pathlib import Path

from geolibre_env.errors import ConfigError
from geolibre_env.paths import Paths

log = logging.getLogger("geolibre.trust")
_warned: set[str] = set()  # each ignored setting is reported once per process

# uv's settings that skip certificate checks for a host; never passed on.
INSECURE_UV_SETTINGS = ("UV_INSECURE_HOST", "UV_ALLOW_INSECURE_HOST")
# pip's equivalents, for anything we run with pip's settings.
INSECURE_PIP_SETTINGS = ("PIP_TRUSTED_HOST",)
SYSTEM_CERTS_SINCE = (0, 11, 0)  # uv renamed --native-tls to --system-certs in 0.11.0
# Where Linux distributions keep their CA bundle (Debian/Ubuntu, Fedora/RHEL, openSUSE, Alpine).
LINUX_CA_FILES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
)
CA_BUNDLE_HINT = "Point GEOLIBRE_ML_CA_BUNDLE at a PEM file of trusted root certificates."


def insecure_settings(environ: Mapping[str, str]) -> list[str]:
    """The settings that would switch certificate checks off, as the user set them."""
    names = (*INSECURE_UV_SETTINGS, *INSECURE_PIP_SETTINGS)
    return [name for name in names if environ.get(name, "").strip()]


def uv_tls_flag(version: tuple[int, ...] | None) -> str:
    """The variable that makes this uv use the OS trust store."""
    if version is not None and version < SYSTEM_CERTS_SINCE:
        return "UV_NATIVE_TLS"
    return "UV_SYSTEM_CERTS"


def check_ca_bundle(bundle: Path) -> None:
    """Raise :class:`ConfigError` unless ``bundle`` is a readable PEM file (or folder)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if bundle.is_dir():
            context.load_verify_locations(capath=str(bundle))
        else:
            context.load_verify_locations(cafile=str(bundle))
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"GEOLIBRE_ML_CA_BUNDLE={bundle} cannot be used as a certificate bundle: {reason}.",
            hint=CA_BUNDLE_HINT,
        ) from None


def ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """A verifying client context: the OS trust store (truststore), plus ``ca_bundle``."""
    try:
        import truststore

        context: ssl.SSLContext = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    except ImportError:  # pragma: no cover - truststore is a dependency
        import certifi

        context = ssl.create_default_context()
        context.load_verify_locations(cafile=certifi.where())
    if ca_bundle is not None:
        check_ca_bundle(ca_bundle)
        if ca_bundle.is_dir():
            context.load_verify_locations(capath=str(ca_bundle))
        else:
            context.load_verify_locations(cafile=str(ca_bundle))
    return context


def base_roots(environ: Mapping[str, str]) -> Path | None:
    """The roots a child would trust without us: the user's SSL_CERT_FILE, else the
    system bundle file (Linux), else certifi's copy of Mozilla's roots."""
    configured = environ.get("SSL_CERT_FILE", "").strip()
    if configured and Path(configured).is_file():
        return Path(configured)
    defaults = ssl.get_default_verify_paths()
    for candidate in (defaults.cafile, defaults.openssl_cafile, *LINUX_CA_FILES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    try:
        import certifi

        return Path(certifi.where())
    except ImportError:  # pragma: no cover - httpx depends on certifi
        return None


def combined_bundle(paths: Paths, ca_bundle: Path, environ: Mapping[str, str]) -> Path:
    """One PEM file with the usual roots and the extra CA (for uv's SSL_CERT_FILE).

    Written once per content (the name carries its hash) under the cache folder.
    """
    check_ca_bundle(ca_bundle)
    pieces: list[bytes] = []
    base = base_roots(environ)
    if base is not None:
        pieces.append(base.read_bytes())
    extra = sorted(ca_bundle.glob("*.pem")) if ca_bundle.is_dir() else [ca_bundle]
    pieces += [path.read_bytes() for path in extra]
    data = b"\n".join(piece.rstrip(b"\n") for piece in pieces) + b"\n"
    digest = hashlib.sha256(data).hexdigest()[:16]
    target = paths.cache / "tls" / f"ca-bundle-{digest}.pem"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return target


def uv_tls_environment(
    env: dict[str, str],
    *,
    paths: Paths,
    ca_bundle: Path | None,
    environ: Mapping[str, str],
    uv_version: tuple[int, ...] | None,
) -> dict[str, str]:
    """``env`` for uv with the OS trust store on, the extra CA added, and every
    "skip verification" setting removed (each one logged as a warning)."""
    for name in INSECURE_UV_SETTINGS:
        if env.pop(name, None) and name not in _warned:
            _warned.add(name)
            log.warning(
                "%s is set but ignored: geolibre-ml never turns certificate checks off "
                "(set GEOLIBRE_ML_CA_BUNDLE to your organisation's root certificate instead)",
                name,
            )
    # One spelling only: the other one makes uv 0.11+ print a deprecation warning.
    for name in ("UV_NATIVE_TLS", "UV_SYSTEM_CERTS"):
        env.pop(name, None)
    env[uv_tls_flag(uv_version)] = "1"
    if ca_bundle is not None:
        env["SSL_CERT_FILE"] = str(combined_bundle(paths, ca_bundle, environ))
    return env
