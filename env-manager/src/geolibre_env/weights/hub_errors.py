"""The Hub's refusals and a broken network, as one sentence and a next step.

The download runs in the model environment (:mod:`geolibre_env.weights.hub_runner`),
so its failures arrive as data: huggingface_hub's exception class names, the
HTTP status and the Hub's ``X-Error-Code``, the cause chain's class names and
text. Class names, not classes: huggingface_hub 1.x raises httpx's errors,
2.x httpx2's.
"""

from __future__ import annotations

from typing import Any

from geolibre_env.errors import InstallCancelledError, WeightsError
from geolibre_env.net.http_client import host_of, proxy_auth_reason
from geolibre_env.proxies import ProxyConfig, has_credentials, proxy_netloc
from geolibre_env.redact import redact

PUBLIC_HUB = "https://huggingface.co"
TOKENS_PAGE = f"{PUBLIC_HUB}/settings/tokens"
OFFLINE_HINT = (
    "Connect to the internet, set HF_ENDPOINT to a mirror, "
    "or use a local checkpoint (--checkpoint / SAM3_CHECKPOINT_PATH)."
)
PROXY_HINT = (
    "Check the proxy setting ({setting}); a proxy that asks for a password takes it in the "
    "URL (http://user:password@host:port)."
)
TLS_HINT = (
    "If a corporate proxy inspects TLS, set GEOLIBRE_ML_CA_BUNDLE to its root certificate "
    "(verification stays on); if only the Xet transfers fail, also set HF_HUB_DISABLE_XET=1; "
    "or use a local checkpoint (--checkpoint / SAM3_CHECKPOINT_PATH)."
)
SERVER_MESSAGE_MAX_CHARS = 300


class GatedWeightsError(WeightsError):
    """The Hub refused the token (401) or the licence is not accepted (403)."""

    def __init__(self, message: str, *, hint: str, status: int, repo: str, server: str) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.repo = repo
        self.server_message = server  # the Hub's own X-Error-Message, redacted


class HubOfflineError(WeightsError):
    """The Hub (or its CDN) could not be reached, or a transfer kept breaking."""

    def __init__(self, message: str, *, hint: str, kind: str, host: str, reason: str) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
        self.host = host
        self.reason = reason


class WeightsIntegrityError(WeightsError):
    """A downloaded file did not match the Hub's checksum or size; it was discarded."""


class WeightsCancelledError(WeightsError, InstallCancelledError):
    """The user cancelled; the partial file is kept so the next run resumes."""


def runner_error(
    info: dict[str, Any], *, repo: str, endpoint: str, proxies: ProxyConfig, has_token: bool
) -> WeightsError:
    """The exception for the runner's ``error`` line (``info``)."""
    status, code = info.get("status"), str(info.get("code") or "")
    host = host_of(endpoint)
    what = str(info.get("what") or "")
    if info.get("kind") == "integrity":
        return WeightsIntegrityError(
            f"{what} from {repo} did not match the Hub's checksum (sha256 "
            f"{str(info.get('actual'))[:12]}… instead of {str(info.get('expected'))[:12]}…), "
            "so it was discarded.",
            hint="Run the download again; if it fails the same way, a proxy or the mirror "
            "in HF_ENDPOINT is altering the file.",
        )
    if info.get("kind") == "disk":
        return WeightsError(
            f"Not enough free disk for the SAM 3 weights: {int(info['needed']) / 1e9:.1f} GB "
            f"needed in {info['folder']}, {int(info['free']) / 1e9:.1f} GB free.",
            hint="Free some space (or move GEOLIBRE_ML_HOME to a larger drive), then retry.",
        )
    if info.get("strerror") and status is None:
        return WeightsError(
            f"Could not write {what or 'the weights'}: {info['strerror']}.",
            hint="Check free disk space and that the folder is writable, then retry.",
        )
    if status == 407:  # a plain-http request answered by the proxy itself
        asked = f"{endpoint.split('://')[0]}://{info['host']}" if info.get("host") else endpoint
        return _proxy_auth(asked, proxies)
    if isinstance(status, int):
        return _http_error(status, code, info, repo=repo, host=host, has_token=has_token)
    return _transport_error(info, endpoint=endpoint, proxies=proxies)


def _http_error(
    status: int, code: str, info: dict[str, Any], *, repo: str, host: str, has_token: bool
) -> WeightsError:
    page = f"{PUBLIC_HUB}/{repo}"
    server = redact(str(info.get("server") or ""))[:SERVER_MESSAGE_MAX_CHARS]
    what = str(info.get("what") or "")
    if status == 403 or (status == 401 and code != "RepoNotFound"):
        return _gated(status, repo, page, has_token=has_token, server=server)
    if status in (401, 404):
        missing = {
            "RepoNotFound": f"repository {repo}",
            "RevisionNotFound": f"such revision of {repo} (the [weights] revision)",
        }.get(code, f"{what or 'such file'} in {repo}")
        hint = "Check HF_ENDPOINT and the [weights] section of the model-env spec."
        if code == "RepoNotFound" and status == 401:
            hint = f"Check the token can read {repo} ({TOKENS_PAGE}); {hint[0].lower()}{hint[1:]}"
        return WeightsError(f"The Hub at {host} has no {missing}.", hint=hint)
    if status == 429:
        return WeightsError(
            "The Hugging Face Hub is limiting how fast we may download (HTTP 429).",
            hint="Wait a few minutes and retry; a Hub token raises the limit.",
        )
    return WeightsError(
        f"The Hugging Face Hub answered HTTP {status} for {repo} ({what or 'a request'}).",
        hint="The Hub may be having trouble: retry in a few minutes.",
    )


def _gated(status: int, repo: str, page: str, *, has_token: bool, server: str) -> GatedWeightsError:
    if status == 401 and not has_token:
        message = f"The Hugging Face Hub refused access to {repo} (HTTP 401: no token was given)."
        hint = (
            f"{repo} is gated: accept its licence on the Hub ({page}), create a read token "
            f"({TOKENS_PAGE}), then retry with the token (--token or HF_TOKEN)."
        )
    elif status == 401:
        message = (
            f"The Hugging Face Hub refused access to {repo} (HTTP 401: the token was rejected)."
        )
        hint = (
            f"Check the token is current ({TOKENS_PAGE}), accept the licence for {repo} on the "
            f"Hub ({page}), then retry."
        )
    else:
        message = f"The Hugging Face Hub refused access to {repo} (HTTP 403)."
        hint = (
            f"Accept the licence for {repo} on the Hub ({page}), make sure your token can read "
            "gated repositories, then retry."
        )
    return GatedWeightsError(message, hint=hint, status=status, repo=repo, server=server)


def _proxy_auth(endpoint: str, proxies: ProxyConfig) -> HubOfflineError:
    proxy = proxies.for_url(endpoint)
    host = host_of(endpoint)
    return HubOfflineError(
        f"Could not reach the Hugging Face Hub at {host}: "
        f"{proxy_auth_reason(proxy_netloc(proxy), has_credentials(proxy))}.",
        hint=PROXY_HINT.format(setting=proxies.setting_for(endpoint)),
        kind="proxy-auth",
        host=host,
        reason="HTTP 407",
    )


def _transport_error(
    info: dict[str, Any], *, endpoint: str, proxies: ProxyConfig
) -> HubOfflineError:
    chain = [(str(name), str(text)) for name, text in info.get("chain", [])]
    names = {name for name, _ in chain}
    text = redact(" ".join(t for _, t in chain)).lower()
    host, proxy = host_of(endpoint), proxies.for_url(endpoint)
    via = proxy_netloc(proxy)
    if "407" in text and (via or "ProxyError" in names):
        return _proxy_auth(endpoint, proxies)
    kind, reason, hint = "other", _short(chain), OFFLINE_HINT
    if "ProxyError" in names or (via and names & {"ConnectError", "ConnectTimeout"}):
        kind, reason = "proxy", f"the proxy {via or ''} could not be reached or refused to connect"
        hint = PROXY_HINT.format(setting=proxies.setting_for(endpoint))
    elif "certificate" in text or "SSLError" in names or "ssl" in text:
        kind, hint = "tls", TLS_HINT
        reason = (
            "its TLS certificate is not trusted on this computer"
            if "certificate_verify_failed" in text or "certificate verify failed" in text
            else f"the TLS handshake failed ({_short(chain)})"
        )
    elif "name or service not known" in text or "gaierror" in text or "getaddrinfo" in text:
        kind, reason = "dns", "the name could not be resolved (no DNS answer)"
    elif "refused" in text:
        kind, reason = "refused", "the connection was refused"
    elif names & {"ConnectTimeout", "ReadTimeout", "TimeoutException"} or "timed out" in text:
        kind, reason = "timeout", "the connection timed out"
    elif names & {"RemoteProtocolError", "ReadError"} or "consistency check failed" in text:
        kind, reason = "dropped", "the connection was cut off"
        hint = "Run it again: it continues from the bytes already received."
    return HubOfflineError(
        f"Could not reach the Hugging Face Hub at {host}: {reason.replace('  ', ' ')}.",
        hint=hint,
        kind=kind,
        host=host,
        reason=reason,
    )


def _short(chain: list[tuple[str, str]]) -> str:
    # The innermost cause names the problem; the outer ones are the library's wrapping.
    name, text = chain[-1] if chain else ("error", "")
    first = redact(text.strip().splitlines()[0] if text.strip() else name)
    return first[:200]
